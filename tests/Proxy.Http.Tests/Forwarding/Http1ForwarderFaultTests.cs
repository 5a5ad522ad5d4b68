using System.Net;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Routing;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>Fault injection decided by the forwarder's injected random source: which requests a percentage picks is deterministic.</summary>
public sealed class Http1ForwarderFaultTests
{
    private static async Task<(ForwarderHarness Proxy, KestrelUpstream Upstream)> StartAsync(FaultConfig fault, params int[] draws)
    {
        var upstream = await KestrelUpstream.StartAsync(ctx => ctx.Response.WriteAsync("up"));
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]);
        var route = new RouteConfig
        {
            Name = "faulty",
            Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web")] },
            Fault = fault,
        };
        var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(new RouteTable([route]), registry.FindByName),
            new Http1ForwarderOptions { Random = new ScriptedRandomSource(draws) });
        return (proxy, upstream);
    }

    [Fact]
    public async Task HandleAsync_AbortPercentage_TheDrawsBelowItAreAborted()
    {
        // 10%: a draw from [0, 1,000,000) below 100,000 aborts.
        var (proxy, upstream) = await StartAsync(new FaultConfig { Abort = new FaultAbortConfig { HttpStatus = 503, Percentage = 10 } }, 99_999, 100_000, 0, 999_999);
        await using var _ = upstream;
        await using var __ = proxy;
        using var client = proxy.CreateClient();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await client.GetAsync("/x").WaitAsync(Timeouts.Short);
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.ServiceUnavailable, HttpStatusCode.OK, HttpStatusCode.ServiceUnavailable, HttpStatusCode.OK], statuses);
        var records = await proxy.Observer.WaitForAsync(4);
        Assert.Equal([ProxyErrors.FaultAbort, null, ProxyErrors.FaultAbort, null], records.Select(r => r.Error));
        Assert.Equal([true, false, true, false], records.Select(r => r.ProxyMade));
        Assert.All(records, r => Assert.Equal("faulty", r.Route));
    }

    [Fact]
    public async Task HandleAsync_DelayAndAbortDrawnSeparately_DelayFirst()
    {
        // Each request draws for the delay, then for the abort: (delay yes, abort no), (no, yes).
        var fault = new FaultConfig
        {
            Delay = new FaultDelayConfig(TimeSpan.FromMilliseconds(200), 50),
            Abort = new FaultAbortConfig { HttpStatus = 500, Percentage = 50 },
        };
        var (proxy, upstream) = await StartAsync(fault, 0, 999_999, 999_999, 0);
        await using var _ = upstream;
        await using var __ = proxy;
        using var client = proxy.CreateClient();
        using (var delayed = await client.GetAsync("/x").WaitAsync(Timeouts.Short))
        {
            Assert.Equal(HttpStatusCode.OK, delayed.StatusCode);
        }

        using (var aborted = await client.GetAsync("/x").WaitAsync(Timeouts.Short))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, aborted.StatusCode);
        }

        var records = await proxy.Observer.WaitForAsync(2);
        Assert.True(records[0].Duration >= TimeSpan.FromMilliseconds(195), $"first request took {records[0].Duration.TotalMilliseconds} ms");
    }
}

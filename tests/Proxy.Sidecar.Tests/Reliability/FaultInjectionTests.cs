using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using static Proxy.Sidecar.Tests.Reliability.RetryTests;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Fault injection through a real sidecar: aborts (HTTP and gRPC) answered by the proxy without reaching the upstream,
/// fixed delays, a percentage observed over many requests, faults on a route matched by a header, and faults asked
/// for by request fields on routes that allow it.
/// </summary>
public sealed class FaultInjectionTests : ReliabilityTestBase
{
    private async Task<(SidecarHost Host, ScriptedUpstream Upstream)> StartAsync(params RouteConfig[] routes)
    {
        var upstream = Upstream("u");
        var host = await EdgeAsync(new ServiceConfig("app", [], [upstream.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 }, routes);
        return (host, upstream);
    }

    private static RouteConfig Route(string name, FaultConfig? fault, RouteMatchConfig? match = null, RouteTimeoutsConfig? timeouts = null) => new()
    {
        Name = name,
        Match = match ?? new RouteMatchConfig(),
        Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("app")] },
        Fault = fault,
        Timeouts = timeouts,
    };

    private static FaultConfig Abort(int? http = 503, int? grpc = null, double percentage = 100)
        => new() { Abort = new FaultAbortConfig { HttpStatus = http, GrpcStatus = grpc, Percentage = percentage } };

    private static int FaultsInjected(string metrics, string route, string kind)
    {
        var match = Regex.Match(metrics, $"proxy_http_faults_injected_total\\{{listener=\"edge\",route=\"{route}\",kind=\"{kind}\"\\}} (\\d+)");
        return match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    [Fact]
    public async Task Abort_EveryRequest_ProxyMadeStatus_UpstreamNeverReached()
    {
        var (host, upstream) = await StartAsync(Route("chaos", Abort(503)));
        using var http = Client();
        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync(Url(host, "/x"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("fault_abort", response.Headers.GetValues("x-proxy-error").Single());
            var body = await response.Content.ReadAsStringAsync();
            Assert.Contains("route chaos on listener edge aborted the request to service app with 503", body, StringComparison.Ordinal);
            Assert.Contains("100% of its requests", body, StringComparison.Ordinal);
        }

        Assert.Equal(0, upstream.Requests);
        var metrics = await MetricsAsync(host);
        Assert.Equal(3, FaultsInjected(metrics, "chaos", "abort"));
        Assert.Contains("route=\"chaos\",status_class=\"5xx\",error=\"fault_abort\"} 3", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Abort_Percentage_ObservedShareWithinWideBounds()
    {
        var (host, upstream) = await StartAsync(Route("half", Abort(500, percentage: 50)));
        using var http = Client();
        const int Requests = 400;
        var aborted = 0;
        for (var i = 0; i < Requests; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            if (response.StatusCode == HttpStatusCode.InternalServerError)
            {
                Assert.Equal("fault_abort", response.Headers.GetValues("x-proxy-error").Single());
                aborted++;
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }
        }

        // Binomial(400, 0.5): mean 200, sd 10; 8 sd either way, so this never flakes and still catches 0% or 100%.
        Assert.InRange(aborted, 120, 280);
        Assert.Equal(Requests - aborted, upstream.Requests);
        Assert.Equal(aborted, FaultsInjected(await MetricsAsync(host), "half", "abort"));
    }

    [Fact]
    public async Task Delay_Fixed_HoldsTheRequestThenForwardsIt()
    {
        var (host, upstream) = await StartAsync(Route("slowed", new FaultConfig { Delay = new FaultDelayConfig(TimeSpan.FromMilliseconds(300)) }));
        using var http = Client();
        var clock = Stopwatch.StartNew();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(295), $"answered after {clock.Elapsed.TotalMilliseconds} ms");
        Assert.Equal(1, upstream.Requests);
        Assert.Equal(1, FaultsInjected(await MetricsAsync(host), "slowed", "delay"));
    }

    [Fact]
    public async Task Delay_LongerThanTheRequestTimeout_504RequestTimeout()
    {
        var route = Route("slowed", new FaultConfig { Delay = new FaultDelayConfig(TimeSpan.FromSeconds(30)) }, timeouts: new RouteTimeoutsConfig { Request = TimeSpan.FromMilliseconds(300) });
        var (host, upstream) = await StartAsync(route);
        using var http = Client();
        var clock = Stopwatch.StartNew();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("request_timeout", response.Headers.GetValues("x-proxy-error").Single());
        Assert.Contains("fault delay", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(290), TimeSpan.FromSeconds(10));
        Assert.Equal(0, upstream.Requests);
    }

    [Fact]
    public async Task FaultRoute_MatchedByHeader_OnlyThoseRequestsAborted()
    {
        var chaos = Route("chaos", Abort(502), new RouteMatchConfig { Headers = [new HeaderMatchConfig("x-chaos", HeaderMatchKind.Exact, "on")] });
        var (host, upstream) = await StartAsync(chaos, Route("default", null));
        using var http = Client();
        using (var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/x")))
        {
            request.Headers.Add("x-chaos", "on");
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        }

        using (var response = await http.GetAsync(Url(host, "/x")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, upstream.Requests);
    }

    [Fact]
    public async Task HeaderControl_FieldsInjectFaults_OnlyOnRoutesThatAllowIt()
    {
        var controlled = Route("controlled", new FaultConfig { HeaderControl = true }, new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/c") });
        var (host, upstream) = await StartAsync(controlled, Route("plain", null));
        using var http = Client();

        async Task<HttpResponseMessage> SendAsync(string path, string name, string value)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, path));
            request.Headers.Add(name, value);
            return await http.SendAsync(request);
        }

        using (var response = await SendAsync("/c", "x-proxy-fault-abort", "418"))
        {
            Assert.Equal((HttpStatusCode)418, response.StatusCode);
            Assert.Equal("fault_abort", response.Headers.GetValues("x-proxy-error").Single());
            Assert.Contains("x-proxy-fault-abort field", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var clock = Stopwatch.StartNew();
        using (var response = await SendAsync("/c", "x-proxy-fault-delay-ms", "250"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(245), $"answered after {clock.Elapsed.TotalMilliseconds} ms");
        }

        // Not on a route without headerControl, and not without the field.
        using (var response = await SendAsync("/p", "x-proxy-fault-abort", "418"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var response = await http.GetAsync(Url(host, "/c")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(3, upstream.Requests);
    }

    [Fact]
    public async Task Grpc_Abort_TrailersOnlyWithTheConfiguredStatus()
    {
        var (host, upstream) = await StartAsync(Route("grpc-chaos", Abort(http: null, grpc: 14)));
        var (status, message, reason) = await TimeoutTests.GrpcCallAsync(host);
        Assert.Equal(14, status);
        Assert.Equal("fault_abort", reason);
        Assert.Contains("gRPC status UNAVAILABLE", message, StringComparison.Ordinal);

        // The same route answers a plain HTTP request with the HTTP mapping of UNAVAILABLE.
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(0, upstream.Requests);
    }

    [Fact]
    public async Task Grpc_HeaderControl_AbortGrpcField()
    {
        var (host, _) = await StartAsync(Route("controlled", new FaultConfig { HeaderControl = true }));
        var (status, _, reason) = await TimeoutTests.GrpcCallAsync(host, ("x-proxy-fault-abort-grpc", "8"));
        Assert.Equal(8, status);
        Assert.Equal("fault_abort", reason);
    }
}

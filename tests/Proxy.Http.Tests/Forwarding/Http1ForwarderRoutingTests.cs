using System.Net;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Routing;

namespace Proxy.Http.Tests.Forwarding;

public sealed class Http1ForwarderRoutingTests
{
    private static RouteConfig Route(string name, RouteMatchConfig match, RouteActionConfig action) => new() { Name = name, Match = match, Action = action };

    private static RouteActionConfig To(params WeightedDestinationConfig[] destinations) => new() { Destinations = destinations };

    private static Task<KestrelUpstream> NamedUpstreamAsync(string name) => KestrelUpstream.StartAsync(ctx =>
    {
        ctx.Response.Headers["x-upstream"] = name;
        return ctx.Response.WriteAsync(name);
    });

    private static ServiceRegistry WebWithSubsets(IPEndPoint v1, IPEndPoint v2) => new(
    [
        new ServiceConfig("web", [], [v1, v2]) { Subsets = [new SubsetConfig("v1", [v1]), new SubsetConfig("v2", [v2])] },
    ]);

    [Fact]
    public async Task HandleAsync_HeaderRoute_SendsVariantBToSubsetV2AndOthersToV1()
    {
        await using var a = await NamedUpstreamAsync("v1");
        await using var b = await NamedUpstreamAsync("v2");
        var registry = WebWithSubsets(a.EndPoint, b.EndPoint);
        var routes = new RouteTable(
        [
            Route("variant-b", new RouteMatchConfig { Headers = [new HeaderMatchConfig("x-variant", HeaderMatchKind.Exact, "b")] }, To(new WeightedDestinationConfig("web", "v2"))),
            Route("default", new RouteMatchConfig(), To(new WeightedDestinationConfig("web", "v1"))),
        ]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(routes, registry.FindByName));
        using var client = proxy.CreateClient();

        for (var i = 0; i < 4; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/ab");
            if (i % 2 == 1)
            {
                request.Headers.Add("x-variant", "b");
            }

            using var response = await client.SendAsync(request).WaitAsync(Timeouts.Short);
            Assert.Equal(i % 2 == 1 ? "v2" : "v1", await response.Content.ReadAsStringAsync());
        }

        var records = await proxy.Observer.WaitForAsync(4);
        Assert.Equal(["default", "variant-b", "default", "variant-b"], records.Select(r => r.Route));
        Assert.Equal(["v1", "v2", "v1", "v2"], records.Select(r => r.Subset));
        Assert.All(records, r => Assert.Equal("web", r.Service));
    }

    [Fact]
    public async Task HandleAsync_WeightedSplit_NinetyTenWithinBinomialBounds()
    {
        await using var a = await NamedUpstreamAsync("v1");
        await using var b = await NamedUpstreamAsync("v2");
        var registry = WebWithSubsets(a.EndPoint, b.EndPoint);
        var routes = new RouteTable([Route("canary", new RouteMatchConfig(), To(new WeightedDestinationConfig("web", "v1", 90), new WeightedDestinationConfig("web", "v2", 10)))]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(routes, registry.FindByName), new Http1ForwarderOptions { Random = new SeededRandomSource(20261126) });
        using var client = proxy.CreateClient();

        const int Requests = 2000;
        var v2 = 0;
        for (var i = 0; i < Requests; i++)
        {
            var body = await client.GetStringAsync("/split").WaitAsync(Timeouts.Short);
            v2 += body == "v2" ? 1 : 0;
        }

        // Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd either way.
        Assert.InRange(v2, 200 - 67, 200 + 67);
        var records = await proxy.Observer.WaitForAsync(Requests);
        Assert.Equal(v2, records.Count(r => r.Subset == "v2"));
        Assert.Equal(2, proxy.Pool.Connects);
    }

    [Fact]
    public async Task HandleAsync_NoRouteMatches_Answers404WithReasonAndKeepsConnection()
    {
        await using var a = await NamedUpstreamAsync("v1");
        var registry = WebWithSubsets(a.EndPoint, a.EndPoint);
        var routes = new RouteTable([Route("api", new RouteMatchConfig { Hosts = ["api.example"] }, To(new WeightedDestinationConfig("web")))]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(routes, registry.FindByName), listener: "outbound");
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /missing HTTP/1.1\r\nHost: other.example\r\n\r\n");
        var response = await client.Reader.ReadResponseAsync();
        Assert.Equal(404, response.Status);
        Assert.Equal(ProxyErrors.NoRoute, response.Header(ProxyErrors.HeaderName));
        Assert.Equal("text/plain; charset=utf-8", response.Header("content-type"));
        Assert.Equal("no route matched GET other.example/missing on listener outbound\n", response.BodyText);

        await client.SendAsync("GET /ok HTTP/1.1\r\nHost: api.example\r\n\r\n");
        Assert.Equal("v1", (await client.Reader.ReadResponseAsync()).BodyText);

        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal(ProxyErrors.NoRoute, records[0].Error);
        Assert.True(records[0].ProxyMade);
        Assert.False(records[0].Routed);
        Assert.Equal("unknown", records[0].Service);
        Assert.Equal(404, records[0].StatusCode);
        Assert.Equal(1, proxy.Observer.RoutedCalls);
    }

    [Fact]
    public async Task HandleAsync_RouteHeaderMutations_AppliedToRequestAndResponse()
    {
        await using var upstream = await KestrelUpstream.StartAsync(ctx =>
        {
            ctx.Response.Headers["x-internal"] = "secret";
            ctx.Response.Headers["x-kept"] = "1";
            ctx.Response.Headers["x-version"] = "upstream";
            var seen = string.Join("|",
                $"env={ctx.Request.Headers["x-env"]}",
                $"tag={string.Join(",", ctx.Request.Headers["x-tag"].ToArray())}",
                $"drop={ctx.Request.Headers["x-drop"]}",
                $"keep={ctx.Request.Headers["x-keep"]}");
            return ctx.Response.WriteAsync(seen);
        });
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]);
        var action = new RouteActionConfig
        {
            Destinations = [new WeightedDestinationConfig("web")],
            RequestHeaders = new HeaderMutationsConfig { Set = [new("x-env", "prod")], Add = [new("x-tag", "proxy")], Remove = ["x-drop"] },
            ResponseHeaders = new HeaderMutationsConfig { Set = [new("x-version", "proxy")], Add = [new("x-served-by", "sidecar")], Remove = ["x-internal"] },
        };
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(new RouteTable([Route("r", new RouteMatchConfig(), action)]), registry.FindByName));
        using var client = proxy.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/m");
        request.Headers.Add("x-env", "dev");
        request.Headers.Add("x-tag", "client");
        request.Headers.Add("x-drop", "please");
        request.Headers.Add("x-keep", "yes");

        using var response = await client.SendAsync(request).WaitAsync(Timeouts.Short);

        Assert.Equal("env=prod|tag=client,proxy|drop=|keep=yes", await response.Content.ReadAsStringAsync());
        Assert.False(response.Headers.Contains("x-internal"));
        Assert.Equal("1", response.Headers.GetValues("x-kept").Single());
        Assert.Equal("proxy", response.Headers.GetValues("x-version").Single());
        Assert.Equal("sidecar", response.Headers.GetValues("x-served-by").Single());
    }

    [Fact]
    public async Task HandleAsync_RouteToUnknownServiceOrSubset_Answers503NoEndpoint()
    {
        await using var a = await NamedUpstreamAsync("v1");
        var registry = WebWithSubsets(a.EndPoint, a.EndPoint);
        var routes = new RouteTable(
        [
            Route("ghost", new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/ghost") }, To(new WeightedDestinationConfig("ghost"))),
            Route("v9", new RouteMatchConfig(), To(new WeightedDestinationConfig("web", "v9"))),
        ]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(routes, registry.FindByName), listener: "outbound");
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /ghost HTTP/1.1\r\nHost: a\r\n\r\n");
        var ghost = await client.Reader.ReadResponseAsync();
        await client.SendAsync("GET /other HTTP/1.1\r\nHost: a\r\n\r\n");
        var subset = await client.Reader.ReadResponseAsync();

        Assert.Equal(503, ghost.Status);
        Assert.Equal(ProxyErrors.NoEndpoint, ghost.Header(ProxyErrors.HeaderName));
        Assert.Equal("service ghost (route ghost on listener outbound) is unknown, so there is no endpoint to send the request to\n", ghost.BodyText);
        Assert.Equal(503, subset.Status);
        Assert.Equal("service web has no subset v9 (route v9 on listener outbound), so there is no endpoint to send the request to\n", subset.BodyText);
        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal("ghost", records[0].Service);
        Assert.Equal("v9", records[1].Subset);
        Assert.All(records, r => Assert.Equal(ProxyErrors.NoEndpoint, r.Error));
    }

    [Theory]
    [InlineData(HashOn.Header, "x-user: alice")]
    [InlineData(HashOn.Cookie, "Cookie: theme=dark; user=alice")]
    public async Task HandleAsync_RingHashOnHeaderOrCookie_SameKeySameEndpoint(HashOn hashOn, string keyLine)
    {
        await using var a = await NamedUpstreamAsync("a");
        await using var b = await NamedUpstreamAsync("b");
        await using var c = await NamedUpstreamAsync("c");
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [a.EndPoint, b.EndPoint, c.EndPoint])
        {
            Balancer = BalancerKind.RingHash,
            HashOn = hashOn,
            HashKey = hashOn == HashOn.Header ? "x-user" : "user",
        }]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(registry.FindByName("web")!));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        var seen = new HashSet<string>();
        for (var i = 0; i < 20; i++)
        {
            await client.SendAsync($"GET /h HTTP/1.1\r\nHost: a\r\n{keyLine}\r\n\r\n");
            seen.Add((await client.Reader.ReadResponseAsync()).BodyText);
        }

        Assert.Single(seen);
        var expected = registry.FindByName("web")!.Balancer.Pick(BalancerContext.WithKey("alice"u8)).Address;
        var records = await proxy.Observer.WaitForAsync(20);
        Assert.All(records, r => Assert.Equal(expected, r.Endpoint));
    }
}

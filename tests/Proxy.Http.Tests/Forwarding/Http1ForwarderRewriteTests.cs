using System.Net;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>Routes that rewrite the target or answer themselves (redirect, directResponse), through real sockets.</summary>
public sealed class Http1ForwarderRewriteTests
{
    private const string Routes = """
        [ { "name": "api", "match": { "path": { "segmentPrefix": "/api" } },
            "action": { "service": "web", "rewrite": { "pathPrefix": "/v2", "host": "backend.internal" } } },
          { "name": "whole", "match": { "path": { "exact": "/healthz" } },
            "action": { "service": "web", "rewrite": { "path": "/internal/health" } } },
          { "name": "old", "match": { "path": { "prefix": "/old/" } },
            "action": { "redirect": { "scheme": "https", "pathPrefix": "/new/", "status": 301 },
                        "responseHeaders": { "set": [{ "name": "cache-control", "value": "no-store" }] } } },
          { "name": "down", "match": { "path": { "prefix": "/maintenance" } },
            "action": { "directResponse": { "status": 503, "body": "down for maintenance\n" },
                        "responseHeaders": { "add": [{ "name": "retry-after", "value": "60" }] } } },
          { "name": "json", "match": { "path": { "exact": "/status.json" } },
            "action": { "directResponse": { "status": 200, "body": "{\"ok\":true}" },
                        "responseHeaders": { "set": [{ "name": "content-type", "value": "application/json" }] } } },
          { "name": "rest", "action": { "service": "web" } } ]
        """;

    /// <summary>An upstream that answers with the target and Host it was sent.</summary>
    private static Task<KestrelUpstream> EchoUpstreamAsync() => KestrelUpstream.StartAsync(ctx =>
        ctx.Response.WriteAsync($"{ctx.Request.Path}{ctx.Request.QueryString}|{ctx.Request.Host}"));

    private static Http1Routing Routing(IPEndPoint upstream, UpstreamProtocol protocol = UpstreamProtocol.Same)
    {
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream]) { UpstreamProtocol = protocol }]);
        var routes = RouteConfigReader.ReadJson(Routes);
        Assert.True(routes.Ok, string.Join("\n", routes.Errors));
        return Http1Routing.ForRoutes(new RouteTable(routes.Routes!), registry.FindByName);
    }

    [Fact]
    public async Task Rewrite_PathPrefixAndHost_UpstreamSeesNewTarget_AccessLogKeepsTheOriginal()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream.EndPoint));
        using var client = proxy.CreateClient();

        Assert.Equal("/v2/users?id=7|backend.internal", await client.GetStringAsync("/api/users?id=7").WaitAsync(Timeouts.Short));
        Assert.Equal("/v2|backend.internal", await client.GetStringAsync("/api").WaitAsync(Timeouts.Short));
        Assert.Equal("/internal/health?full=1|" + proxy.EndPoint, await client.GetStringAsync("/healthz?full=1").WaitAsync(Timeouts.Short));
        // Not rewritten: the next request on the same connection goes with its own target.
        Assert.Equal("/apix|" + proxy.EndPoint, await client.GetStringAsync("/apix").WaitAsync(Timeouts.Short));

        var records = await proxy.Observer.WaitForAsync(4);
        Assert.Equal(["/api/users?id=7", "/api", "/healthz?full=1", "/apix"], records.Select(r => r.Target));
        Assert.Equal(["api", "api", "whole", "rest"], records.Select(r => r.Route));
        Assert.All(records, r => Assert.Equal(200, r.StatusCode));
    }

    [Fact]
    public async Task Rewrite_AbsoluteFormTarget_AuthorityAndPathRewritten()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream.EndPoint));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET http://api.example/api/a?b=1 HTTP/1.1\r\nHost: api.example\r\n\r\n");
        var response = await client.Reader.ReadResponseAsync();

        Assert.Equal(200, response.Status);
        Assert.Equal("/v2/a?b=1|backend.internal", response.BodyText);
    }

    [Fact]
    public async Task Redirect_And_DirectResponse_AnsweredByTheProxy_ConnectionKept_NothingSentUpstream()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream.EndPoint), listener: "edge");
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /old/page?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
        var redirect = await client.Reader.ReadResponseAsync();
        await client.SendAsync("GET /maintenance HTTP/1.1\r\nHost: example.com\r\n\r\n");
        var down = await client.Reader.ReadResponseAsync();
        await client.SendAsync("HEAD /maintenance HTTP/1.1\r\nHost: example.com\r\n\r\n");
        var head = await client.Reader.ReadResponseAsync("HEAD");
        await client.SendAsync("GET /status.json HTTP/1.1\r\nHost: example.com\r\n\r\n");
        var json = await client.Reader.ReadResponseAsync();

        Assert.Equal(301, redirect.Status);
        Assert.StartsWith("HTTP/1.1 301 Moved Permanently\r\n", redirect.Head, StringComparison.Ordinal);
        Assert.Equal("https://example.com/new/page?x=1", redirect.Header("location"));
        Assert.Equal("no-store", redirect.Header("cache-control"));
        Assert.Equal("0", redirect.Header("content-length"));
        Assert.Null(redirect.Header(ProxyErrors.HeaderName));
        Assert.Empty(redirect.Body);

        Assert.Equal(503, down.Status);
        Assert.Equal("down for maintenance\n", down.BodyText);
        Assert.Equal("text/plain; charset=utf-8", down.Header("content-type"));
        Assert.Equal("60", down.Header("retry-after"));
        Assert.Null(down.Header(ProxyErrors.HeaderName));

        Assert.Equal(503, head.Status);
        Assert.Equal("21", head.Header("content-length"));
        Assert.Empty(head.Body);

        Assert.Equal(200, json.Status);
        Assert.Equal("application/json", json.Header("content-type"));
        Assert.Equal("{\"ok\":true}", json.BodyText);

        var records = await proxy.Observer.WaitForAsync(4);
        Assert.Equal(["old", "down", "down", "json"], records.Select(r => r.Route));
        Assert.Equal([301, 503, 503, 200], records.Select(r => r.StatusCode));
        Assert.All(records, r => Assert.True(r.ProxyMade));
        Assert.All(records, r => Assert.Null(r.Error));
        Assert.All(records, r => Assert.False(r.Routed));
        Assert.Equal([0L, 21, 0, 11], records.Select(r => r.ResponseBytes));
        Assert.Equal(0, proxy.Pool.Connects);
        Assert.Equal(0, proxy.Observer.RoutedCalls);
    }

    [Fact]
    public async Task Redirect_RequestWithUnreadBody_AnsweredThenClosed()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream.EndPoint));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("POST /old/form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        var response = await client.Reader.ReadResponseAsync();

        Assert.Equal(301, response.Status);
        Assert.Equal("https://h/new/form", response.Header("location"));
        Assert.Equal("close", response.Header("connection"));
        var buffer = new byte[16];
        Assert.Equal(0, await client.Stream.ReadAsync(buffer).AsTask().WaitAsync(Timeouts.Short));
    }

    [Fact]
    public async Task Http2Client_RewriteAndRedirect()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream.EndPoint, UpstreamProtocol.Http1), http2: true);
        using var client = proxy.CreateHttp2Client();

        using var rewritten = await client.GetAsync("/api/x?y=1").WaitAsync(Timeouts.Short);
        using var redirected = await client.GetAsync("/old/a").WaitAsync(Timeouts.Short);
        using var direct = await client.GetAsync("/maintenance").WaitAsync(Timeouts.Short);

        Assert.Equal(HttpVersion.Version20, rewritten.Version);
        Assert.Equal("/v2/x?y=1|backend.internal", await rewritten.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.MovedPermanently, redirected.StatusCode);
        Assert.Equal(new Uri($"https://{proxy.EndPoint.Address}/new/a"), redirected.Headers.Location);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, direct.StatusCode);
        Assert.Equal("down for maintenance\n", await direct.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task RouteRateLimit_AppliesToADirectResponseRoute()
    {
        await using var upstream = await EchoUpstreamAsync();
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]);
        var routes = RouteConfigReader.ReadJson("""
            [ { "name": "ping", "action": { "directResponse": { "status": 200, "body": "pong" } },
                "rateLimit": { "requests": 2, "per": "1h" } } ]
            """);
        Assert.True(routes.Ok, string.Join("\n", routes.Errors));
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(new RouteTable(routes.Routes!), registry.FindByName));
        using var client = proxy.CreateClient();

        var statuses = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await client.GetAsync("/ping").WaitAsync(Timeouts.Short);
            statuses.Add((int)response.StatusCode);
        }

        Assert.Equal([200, 200, 429], statuses);
        var records = await proxy.Observer.WaitForAsync(3);
        Assert.Equal(ProxyErrors.RateLimited, records[2].Error);
    }
}

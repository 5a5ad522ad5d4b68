using System.Collections.Concurrent;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>
/// Path normalization through real sockets: what the upstream is sent, which route matches, what the access log has,
/// for each mode; and the encoded NUL refused.
/// </summary>
public sealed class Http1ForwarderPathNormalizationTests
{
    /// <summary>The request lines the upstream was sent.</summary>
    private static string[] Lines(ConcurrentQueue<string> heads) => [.. heads.Select(h => h[..h.IndexOf("\r\n", StringComparison.Ordinal)])];

    private static Http1Routing Routing(RawUpstream upstream)
    {
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]);
        var routes = RouteConfigReader.ReadJson("""
            [ { "name": "admin", "match": { "path": { "segmentPrefix": "/admin" } }, "action": { "directResponse": { "status": 403, "body": "no" } } },
              { "name": "rest", "action": { "service": "web" } } ]
            """);
        return Http1Routing.ForRoutes(new RouteTable(routes.Routes!), registry.FindByName);
    }

    [Theory]
    [InlineData(PathNormalization.Base, "/public/../admin/users", 403, null)]
    [InlineData(PathNormalization.Base, "/public/%2e%2e/admin", 403, null)]
    [InlineData(PathNormalization.Base, "/%61dmin", 403, null)]
    [InlineData(PathNormalization.Base, "/a/./b/../c?x=/../y", 200, "GET /a/c?x=/../y HTTP/1.1")]
    [InlineData(PathNormalization.Base, "/a//b", 200, "GET /a//b HTTP/1.1")]
    [InlineData(PathNormalization.Base, "/x/%2%65%2%65/y", 200, "GET /x/%252e%252e/y HTTP/1.1")]
    [InlineData(PathNormalization.MergeSlashes, "//admin", 403, null)]
    [InlineData(PathNormalization.MergeSlashes, "/a//b", 200, "GET /a/b HTTP/1.1")]
    [InlineData(PathNormalization.MergeSlashes, "/x%2F..%2Fadmin", 200, "GET /x%2F..%2Fadmin HTTP/1.1")]
    [InlineData(PathNormalization.DecodeAndMergeSlashes, "/x%2F..%2Fadmin", 403, null)]
    [InlineData(PathNormalization.None, "/public/../admin/users", 200, "GET /public/../admin/users HTTP/1.1")]
    [InlineData(PathNormalization.None, "/%61dmin", 200, "GET /%61dmin HTTP/1.1")]
    public async Task Mode_RoutesAndForwardsTheNormalizedPath(PathNormalization mode, string path, int status, string? upstreamLine)
    {
        var lines = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(lines);
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream), new Http1ForwarderOptions { PathNormalization = mode });
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync($"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        var response = await client.Reader.ReadResponseAsync();
        // The connection stays usable: a second request on it is answered too.
        await client.SendAsync("GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        var next = await client.Reader.ReadResponseAsync();

        Assert.Equal(status, response.Status);
        Assert.Equal(200, next.Status);
        var sent = Lines(lines);
        Assert.Equal(upstreamLine is null ? ["GET /next HTTP/1.1"] : [upstreamLine, "GET /next HTTP/1.1"], sent);
        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal(status == 403 ? "admin" : "rest", records[0].Route);
        Assert.Equal(path, records[0].Target);
    }

    [Fact]
    public async Task Base_AbsoluteFormTarget_PathNormalizedAuthorityKept()
    {
        var lines = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(lines);
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET http://h.example/x/../y HTTP/1.1\r\nHost: h.example\r\n\r\n");
        Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);

        Assert.Equal(["GET http://h.example/y HTTP/1.1"], Lines(lines));
        // The access log keeps the target as the client sent it (what was attempted), as for route rewrites.
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal("http://h.example/x/../y", record.Target);
    }

    [Fact]
    public async Task EncodedNul_400BadRequest_NothingSentUpstream()
    {
        var lines = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(lines);
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /file%00.txt HTTP/1.1\r\nHost: h\r\n\r\n");
        var response = await client.Reader.ReadResponseAsync();

        Assert.Equal(400, response.Status);
        Assert.Equal(ProxyErrors.BadRequest, response.Header(ProxyErrors.HeaderName));
        Assert.Contains("%00", response.BodyText, StringComparison.Ordinal);
        Assert.Empty(lines);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(ProxyErrors.BadRequest, record.Error);
    }

    [Fact]
    public async Task Http2Client_PathNormalizedToo()
    {
        var lines = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(lines);
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream), http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/public/%2e%2e/admin");
        var status = (await h2.ReadResponseAsync(1)).Status;
        await h2.SendGetAsync(3, "/a/./b");
        var ok = (await h2.ReadResponseAsync(3)).Status;

        Assert.Equal(403, status);
        Assert.Equal(200, ok);
        Assert.Equal(["GET /a/b HTTP/1.1"], Lines(lines));
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// The forwarder hands an HTTP/2 client's lane its response head typed (no HTTP/1.1 head written into the lane and
/// parsed back by the lane's pump). The client must get the same HEADERS, DATA and trailers as through the text path
/// (the forwarder's <see cref="Http1ForwarderOptions.TextHeadsForHttp2"/> seam), for each response shape.
/// </summary>
public sealed class Http2LaneTypedHeadTests
{
    private static Task<KestrelUpstream> UpstreamAsync() => KestrelUpstream.StartAsync(async ctx =>
    {
        switch (ctx.Request.Path.Value)
        {
            case "/len":
                ctx.Response.Headers["x-a"] = "1";
                ctx.Response.ContentLength = 5;
                await ctx.Response.WriteAsync("hello");
                break;
            case "/chunked":
                ctx.Response.ContentType = "text/plain";
                await ctx.Response.WriteAsync("abc");
                await ctx.Response.Body.FlushAsync();
                await ctx.Response.WriteAsync("def");
                break;
            case "/204":
                ctx.Response.StatusCode = 204;
                break;
            case "/304":
                ctx.Response.StatusCode = 304;
                ctx.Response.Headers.ETag = "\"x\"";
                break;
            default:
                ctx.Response.StatusCode = 404;
                ctx.Response.ContentLength = 9;
                await ctx.Response.WriteAsync("not found");
                break;
        }
    });

    private static Http1Routing Routing(IPEndPoint upstream)
    {
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream])]);
        var action = new RouteActionConfig
        {
            Destinations = [new WeightedDestinationConfig("web")],
            ResponseHeaders = new HeaderMutationsConfig { Set = [new("x-version", "proxy")], Add = [new("x-m1", "1"), new("x-m2", "2"), new("x-m3", "3")], Remove = ["x-a"] },
        };
        return Http1Routing.ForRoutes(new RouteTable([new RouteConfig { Name = "r", Match = new RouteMatchConfig(), Action = action }]), registry.FindByName);
    }

    private static async Task<H2Response> FetchAsync(IPEndPoint upstream, string method, string path, bool text, Http1ForwarderOptions? options = null, params (string Name, string Value)[] extra)
    {
        await using var proxy = await ForwarderHarness.StartAsync(Routing(upstream), (options ?? new Http1ForwarderOptions()) with { TextHeadsForHttp2 = text }, http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        await h2.SendHeadersAsync(1, true, [(":method", method), (":scheme", "http"), (":authority", "test"), (":path", path), .. extra]);
        var response = await h2.ReadResponseAsync(1);
        // Kestrel's date changes from one response to the next.
        return response with { Headers = [.. response.Headers.Where(h => h.Name != "date")] };
    }

    [Theory]
    [InlineData("GET", "/len")]
    [InlineData("GET", "/chunked")]
    [InlineData("DELETE", "/204")]
    [InlineData("HEAD", "/len")]
    [InlineData("GET", "/304")]
    [InlineData("GET", "/missing")]
    public async Task TypedLaneHead_TheClientGetsWhatTheTextPathGives(string method, string path)
    {
        await using var upstream = await UpstreamAsync();

        var typed = await FetchAsync(upstream.EndPoint, method, path, text: false, extra: [("te", "trailers")]);
        var text = await FetchAsync(upstream.EndPoint, method, path, text: true, extra: [("te", "trailers")]);

        Assert.Equal(text.Status, typed.Status);
        Assert.Equal(text.Headers, typed.Headers);
        Assert.Equal(text.Body, typed.Body);
        Assert.Equal(text.Trailers, typed.Trailers);
        Assert.Contains(("x-version", "proxy"), typed.Headers);
        Assert.DoesNotContain(typed.Headers, h => h.Name == "x-a");
    }

    [Fact]
    public async Task TypedLaneHead_ChunkedWithTrailers_SameAsTheTextPath()
    {
        // Kestrel sends no trailers over HTTP/1.1: a raw upstream does, in chunked framing.
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new NetworkStream(socket, ownsSocket: false);
            var reader = new RawHttpReader(stream);
            while (await RawUpstreamHttp.ReadRequestAsync(reader) is not null)
            {
                await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n");
            }
        });

        var typed = await FetchAsync(upstream.EndPoint, "POST", "/svc/Method", text: false, extra: [("te", "trailers"), ("content-type", "application/grpc")]);
        var text = await FetchAsync(upstream.EndPoint, "POST", "/svc/Method", text: true, extra: [("te", "trailers"), ("content-type", "application/grpc")]);

        Assert.Equal(text.Headers, typed.Headers);
        Assert.Equal("abc", typed.BodyText);
        Assert.Equal(text.Trailers, typed.Trailers);
        Assert.Equal([("grpc-status", "0"), ("grpc-message", "fine")], typed.Trailers);
    }

    [Fact]
    public async Task TypedLaneHead_TheLanesParserIsNotInvolved()
    {
        // Five fields at most: the upstream's answer (content-length, date, server, x-a) passes the forwarder's parse,
        // but with the route's four more fields the text head written into the lane does not pass the pump's.
        var strict = new Http1ForwarderOptions { Parser = Http1ParserOptions.Default with { MaxHeaderCount = 5 } };
        await using var upstream = await UpstreamAsync();

        var typed = await FetchAsync(upstream.EndPoint, "GET", "/len", text: false, strict);
        var text = await Assert.ThrowsAsync<InvalidOperationException>(() => FetchAsync(upstream.EndPoint, "GET", "/len", text: true, strict));

        Assert.Equal(200, typed.Status);
        Assert.Equal("hello", typed.BodyText);
        Assert.Contains("reset", text.Message, StringComparison.Ordinal);
    }
}

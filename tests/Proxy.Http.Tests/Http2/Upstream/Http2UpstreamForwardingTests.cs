using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>HTTP/1.1 clients through the forwarder to h2c upstreams (Kestrel, HTTP/2 only) over <see cref="Http2UpstreamPool"/>.</summary>
public sealed class Http2UpstreamForwardingTests
{
    internal static Service Http2ServiceOf(string name, params IPEndPoint[] endpoints) =>
        new ServiceRegistry([new ServiceConfig(name, [], endpoints) { UpstreamProtocol = UpstreamProtocol.Http2 }]).FindByName(name)!;

    internal static UpstreamConnector NewConnector() =>
        new(new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) }, NullLoggerFactory.Instance);

    private static Task<KestrelH2Upstream> EchoUpstreamAsync(int maxStreams = 100) => KestrelH2Upstream.StartAsync(async ctx =>
    {
        ctx.Response.Headers["x-upstream-protocol"] = ctx.Request.Protocol;
        ctx.Response.Headers["x-upstream-authority"] = ctx.Request.Host.Value;
        ctx.Response.Headers["x-upstream-te"] = ctx.Request.Headers.TE.ToString();
        ctx.Response.Headers["x-upstream-connection"] = ctx.Request.Headers.Connection.ToString();
        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        if (ctx.Request.Path == "/echo")
        {
            ctx.Response.ContentLength = body.Length;
            await ctx.Response.Body.WriteAsync(body.ToArray());
            return;
        }

        await ctx.Response.WriteAsync($"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} {body.Length}");
    }, maxStreams);

    [Fact]
    public async Task Get_ThroughHttp2Pool_ReachesUpstreamOverHttp2()
    {
        await using var upstream = await EchoUpstreamAsync();
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        using var response = await client.GetAsync("/hello?x=1").WaitAsync(Timeouts.Short);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("GET /hello?x=1 0", await response.Content.ReadAsStringAsync());
        Assert.Equal("HTTP/2", string.Join(",", response.Headers.GetValues("x-upstream-protocol")));
        Assert.Equal(proxy.EndPoint.ToString(), string.Join(",", response.Headers.GetValues("x-upstream-authority")));
        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task Post_ContentLengthAndChunked_5MbByteExact_WithSmallWindows()
    {
        await using var upstream = await EchoUpstreamAsync();
        using var connector = NewConnector();
        var options = new Http2UpstreamPoolOptions { Client = new Http2ClientOptions { InitialStreamWindowSize = 16 * 1024, InitialConnectionWindowSize = 65535 } };
        await using var pool = new Http2UpstreamPool(connector, options);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();
        var payload = RandomNumberGenerator.GetBytes(5 * 1024 * 1024);

        using var withLength = await client.PostAsync("/echo", new ByteArrayContent(payload)).WaitAsync(Timeouts.Bulk);
        var echoed = await withLength.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Bulk);
        Assert.Equal(HttpStatusCode.OK, withLength.StatusCode);
        Assert.True(payload.AsSpan().SequenceEqual(echoed));

        var chunkedContent = new StreamContent(new MemoryStream(payload));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/echo") { Content = chunkedContent };
        request.Headers.TransferEncodingChunked = true;
        using var chunked = await client.SendAsync(request).WaitAsync(Timeouts.Bulk);
        var echoedChunked = await chunked.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Bulk);
        Assert.Equal(HttpStatusCode.OK, chunked.StatusCode);
        Assert.True(payload.AsSpan().SequenceEqual(echoedChunked));
        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task ResponseWithoutContentLength_IsChunked_AndTrailersReachTheClient()
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            ctx.Response.DeclareTrailer("grpc-status");
            await ctx.Response.WriteAsync("part one,");
            await ctx.Response.Body.FlushAsync();
            await ctx.Response.WriteAsync("part two");
            ctx.Response.AppendTrailer("grpc-status", "0");
            ctx.Response.AppendTrailer("grpc-message", "fine");
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        using var response = await client.GetAsync("/t").WaitAsync(Timeouts.Short);
        var text = await response.Content.ReadAsStringAsync().WaitAsync(Timeouts.Short);

        Assert.Equal("part one,part two", text);
        Assert.True(response.Headers.TransferEncodingChunked);
        Assert.Equal("0", string.Join(",", response.TrailingHeaders.GetValues("grpc-status")));
        Assert.Equal("fine", string.Join(",", response.TrailingHeaders.GetValues("grpc-message")));
    }

    [Fact]
    public async Task ChunkedRequestTrailers_ReachTheUpstreamAsHttp2Trailers()
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            using var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            seen.TrySetResult($"{Encoding.ASCII.GetString(body.ToArray())}|{ctx.Request.GetTrailer("x-checksum")}|{ctx.Request.Headers.TE}");
            await ctx.Response.WriteAsync("ok");
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint).WaitAsync(Timeouts.Short);
        await using var stream = new NetworkStream(socket);
        var request = "POST /up HTTP/1.1\r\nHost: web\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request)).AsTask().WaitAsync(Timeouts.Short);

        var response = await new RawHttpReader(stream).ReadResponseAsync().WaitAsync(Timeouts.Short);

        Assert.Equal(200, response.Status);
        Assert.Equal("ok", response.BodyText);
        Assert.Equal("hello world|abc123|trailers", await seen.Task.WaitAsync(Timeouts.Short));
    }

    [Theory]
    [InlineData("HEAD", 200)]
    [InlineData("GET", 204)]
    [InlineData("GET", 304)]
    public async Task ResponsesWithoutBody_HaveNoBodyAndKeepTheConnection(string method, int status)
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(ctx =>
        {
            ctx.Response.StatusCode = status;
            if (status == 200)
            {
                ctx.Response.ContentLength = 1234;
            }

            return Task.CompletedTask;
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint).WaitAsync(Timeouts.Short);
        await using var stream = new NetworkStream(socket);
        var reader = new RawHttpReader(stream);

        for (var i = 0; i < 2; i++)
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"{method} /x HTTP/1.1\r\nHost: web\r\n\r\n")).AsTask().WaitAsync(Timeouts.Short);
            var response = await reader.ReadResponseAsync(method).WaitAsync(Timeouts.Short);
            Assert.Equal(status, response.Status);
            Assert.Empty(response.Body);
            Assert.Null(response.Header("transfer-encoding"));
            if (status == 200)
            {
                Assert.Equal("1234", response.Header("content-length"));
            }
        }

        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task ExpectContinue_100IsRelayed_ThenTheBodyFlows()
    {
        await using var upstream = await EchoUpstreamAsync();
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint).WaitAsync(Timeouts.Short);
        await using var stream = new NetworkStream(socket);
        var reader = new RawHttpReader(stream);

        await stream.WriteAsync("POST /echo HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeouts.Short);
        var interim = await reader.ReadHeadAsync().WaitAsync(Timeouts.Short);
        Assert.StartsWith("HTTP/1.1 100", interim);
        await stream.WriteAsync("hello"u8.ToArray()).AsTask().WaitAsync(Timeouts.Short);
        var response = await reader.ReadResponseAsync().WaitAsync(Timeouts.Short);

        Assert.Equal(200, response.Status);
        Assert.Equal("hello", response.BodyText);
    }

    [Fact]
    public async Task ConcurrentRequests_ShareOneConnection()
    {
        const int count = 20;
        var arrived = 0;
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            if (Interlocked.Increment(ref arrived) == count)
            {
                all.TrySetResult();
            }

            // Every response waits until all requests are in: they must all be open at once.
            await all.Task.WaitAsync(Timeouts.Short);
            await ctx.Response.WriteAsync("ok");
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var responses = await Task.WhenAll(Enumerable.Range(0, count).Select(i => client.GetStringAsync($"/{i}"))).WaitAsync(Timeouts.Short);

        Assert.All(responses, r => Assert.Equal("ok", r));
        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task MaxConcurrentStreamsOne_SecondConcurrentRequest_OpensSecondConnection()
    {
        var arrived = 0;
        var both = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            if (ctx.Request.Path == "/warm")
            {
                await ctx.Response.WriteAsync("ok");
                return;
            }

            if (Interlocked.Increment(ref arrived) == 2)
            {
                both.TrySetResult();
            }

            await both.Task.WaitAsync(Timeouts.Short);
            await ctx.Response.WriteAsync("ok");
        }, maxStreamsPerConnection: 1);
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        // The first connection learns MAX_CONCURRENT_STREAMS=1 from the server's SETTINGS before its first stream.
        Assert.Equal("ok", await client.GetStringAsync("/warm").WaitAsync(Timeouts.Short));
        var responses = await Task.WhenAll(client.GetStringAsync("/a"), client.GetStringAsync("/b")).WaitAsync(Timeouts.Short);

        Assert.Equal(["ok", "ok"], responses);
        Assert.Equal(2, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task UpstreamResetsStream_Answers502WithExplanation()
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(ctx =>
        {
            ctx.Features.Get<IHttpResetFeature>()!.Reset(2);
            return Task.CompletedTask;
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        using var response = await client.GetAsync("/boom").WaitAsync(Timeouts.Short);
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal(ProxyErrors.UpstreamReset, string.Join(",", response.Headers.GetValues(ProxyErrors.HeaderName)));
        Assert.Contains("RST_STREAM INTERNAL_ERROR", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Client_SameProtocol_Get_GoesUpstreamOverHttp2()
    {
        await using var upstream = await EchoUpstreamAsync();
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var service = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]).FindByName("web")!;
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(service), http2: true, http2Pool: pool);
        using var client = proxy.CreateHttp2Client();

        using var response = await client.GetAsync("/lane").WaitAsync(Timeouts.Short);

        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("GET /lane 0", await response.Content.ReadAsStringAsync().WaitAsync(Timeouts.Short));
        Assert.Equal("HTTP/2", string.Join(",", response.Headers.GetValues("x-upstream-protocol")));
    }

    [Fact]
    public async Task Http2Client_SameProtocol_GoesUpstreamOverHttp2_WithGrpcStyleTrailers()
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            using var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            ctx.Response.ContentType = "application/grpc";
            ctx.Response.Headers["x-upstream-protocol"] = ctx.Request.Protocol;
            await ctx.Response.Body.WriteAsync(body.ToArray());
            ctx.Response.AppendTrailer("grpc-status", "0");
            ctx.Response.AppendTrailer("grpc-message", "done");
        });
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var service = new ServiceRegistry([new ServiceConfig("grpc", [], [upstream.EndPoint])]).FindByName("grpc")!;
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(service), http2: true, http2Pool: pool);
        using var client = proxy.CreateHttp2Client();
        var message = new byte[] { 0, 0, 0, 0, 3, 1, 2, 3 };

        for (var i = 0; i < 3; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/pkg.Svc/Call") { Content = new ByteArrayContent(message) };
            request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
            request.Headers.TE.ParseAdd("trailers");
            request.Version = HttpVersion.Version20;
            request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
            using var response = await client.SendAsync(request).WaitAsync(Timeouts.Short);
            var body = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Short);

            Assert.Equal(HttpVersion.Version20, response.Version);
            Assert.Equal("HTTP/2", string.Join(",", response.Headers.GetValues("x-upstream-protocol")));
            Assert.Equal(message, body);
            Assert.Equal("0", string.Join(",", response.TrailingHeaders.GetValues("grpc-status")));
            Assert.Equal("done", string.Join(",", response.TrailingHeaders.GetValues("grpc-message")));
        }

        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task Http1OnlyEndpoint_Answers502UpstreamProtocol()
    {
        await using var upstream = await KestrelUpstream.StartAsync(ctx => ctx.Response.WriteAsync("http/1.1 only"));
        using var connector = NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        using var response = await client.GetAsync("/").WaitAsync(Timeouts.Short);
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal(ProxyErrors.UpstreamProtocol, string.Join(",", response.Headers.GetValues(ProxyErrors.HeaderName)));
        Assert.Contains("does not speak HTTP/2", text, StringComparison.Ordinal);
    }
}

using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>HTTP/2 clients (h2c, prior knowledge) through <see cref="Http2Server"/> to HTTP/1.1 upstreams.</summary>
public sealed class Http2ServerTests
{
    private static Task<KestrelUpstream> EchoUpstreamAsync() => KestrelUpstream.StartAsync(async ctx =>
    {
        ctx.Response.Headers["x-upstream-path"] = ctx.Request.Path.Value;
        ctx.Response.Headers["x-upstream-protocol"] = ctx.Request.Protocol;
        ctx.Response.Headers["x-upstream-framing"] = ctx.Request.ContentLength is { } n ? $"length {n}" : ctx.Request.Headers.TransferEncoding.ToString();
        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        if (ctx.Request.Query.TryGetValue("size", out var size))
        {
            var bytes = Pattern(int.Parse(size!, System.Globalization.CultureInfo.InvariantCulture));
            await ctx.Response.Body.WriteAsync(bytes);
            return;
        }

        if (body.Length > 0)
        {
            await ctx.Response.Body.WriteAsync(body.ToArray());
            return;
        }

        await ctx.Response.WriteAsync($"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} host={ctx.Request.Host}");
    });

    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < length; i++)
        {
            bytes[i] = (byte)(i * 31 + (i >> 8));
        }

        return bytes;
    }

    [Fact]
    public async Task HandleAsync_HttpClientH2c_RequestsOnOneConnectionForwardedAsHttp11()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        for (var i = 0; i < 3; i++)
        {
            using var response = await client.GetAsync($"/item/{i}?q=1").WaitAsync(Timeouts.Short);
            Assert.Equal(HttpVersion.Version20, response.Version);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"GET /item/{i}?q=1 host={proxy.EndPoint}", await response.Content.ReadAsStringAsync());
            Assert.Equal($"/item/{i}", response.Headers.GetValues("x-upstream-path").Single());
            Assert.Equal("HTTP/1.1", response.Headers.GetValues("x-upstream-protocol").Single());
        }

        var records = await proxy.Observer.WaitForAsync(3);
        Assert.All(records, r =>
        {
            Assert.Equal("web", r.Service);
            Assert.Equal(200, r.StatusCode);
            Assert.Equal("HTTP/2", r.Protocol);
            Assert.Null(r.Error);
        });
        Assert.Equal(1, proxy.Pool.Connects);
    }

    [Fact]
    public async Task HandleAsync_ConcurrentStreams_AllAnsweredOnOneClientConnection()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        var tasks = Enumerable.Range(0, 40).Select(async i =>
        {
            using var response = await client.GetAsync($"/c/{i}").WaitAsync(Timeouts.Short);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await response.Content.ReadAsStringAsync();
        }).ToArray();
        var bodies = await Task.WhenAll(tasks).WaitAsync(Timeouts.Short);

        for (var i = 0; i < bodies.Length; i++)
        {
            Assert.Equal($"GET /c/{i} host={proxy.EndPoint}", bodies[i]);
        }

        await proxy.Observer.WaitForAsync(40);
        Assert.InRange(proxy.Pool.Connects, 1, 40);
    }

    [Fact]
    public async Task HandleAsync_PostWithContentLength_BodyByteExactBothWays()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();
        var payload = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17);

        using var response = await client.PostAsync("/upload", new ByteArrayContent(payload)).WaitAsync(Timeouts.Bulk);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal($"length {payload.Length}", response.Headers.GetValues("x-upstream-framing").Single());
        Assert.Equal(payload, await response.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task HandleAsync_PostWithoutLength_ReframedChunkedAndByteExact()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();
        var payload = RandomNumberGenerator.GetBytes(2 * 1024 * 1024 + 5);
        using var content = new StreamContent(new UnseekableStream(payload));

        using var response = await client.PostAsync("/upload", content).WaitAsync(Timeouts.Bulk);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("chunked", response.Headers.GetValues("x-upstream-framing").Single());
        Assert.Equal(payload, await response.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task HandleAsync_LargeDownload_ByteExactWithinFlowControl()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        var body = await client.GetByteArrayAsync("/big?size=9000000").WaitAsync(Timeouts.Bulk);

        Assert.Equal(Pattern(9_000_000), body);
    }

    [Fact]
    public async Task HandleAsync_NoRoute_ProxyMade404ExplainsItself()
    {
        await using var upstream = await EchoUpstreamAsync();
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream.EndPoint])]);
        var routes = new RouteTable([new RouteConfig { Name = "api", Match = new RouteMatchConfig { Hosts = ["api.example"] }, Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web")] } }]);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForRoutes(routes, registry.FindByName), listener: "outbound", http2: true);
        using var client = proxy.CreateHttp2Client();

        using var missing = await client.GetAsync("/missing").WaitAsync(Timeouts.Short);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/ok") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Headers.Host = "api.example";
        using var ok = await client.SendAsync(request).WaitAsync(Timeouts.Short);

        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal(ProxyErrors.NoRoute, missing.Headers.GetValues(ProxyErrors.HeaderName).Single());
        Assert.Equal($"no route matched GET {proxy.EndPoint.Address}/missing on listener outbound\n", await missing.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("GET /ok host=api.example", await ok.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task HandleAsync_UpstreamRefuses_Proxy502WithReason()
    {
        using var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var endPoint = (IPEndPoint)closed.LocalEndPoint!;
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", endPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        using var response = await client.GetAsync("/").WaitAsync(Timeouts.Short);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal(ProxyErrors.UpstreamRefused, response.Headers.GetValues(ProxyErrors.HeaderName).Single());
        Assert.Contains("web", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task HandleAsync_ChunkedUpstreamResponseWithTrailers_TrailersBecomeHttp2Trailers()
    {
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            var reader = new RawHttpReader(new NetworkStream(socket));
            await RawUpstreamHttp.ReadRequestAsync(reader);
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nx-Checksum: abc\r\n\r\n");
            await Task.Delay(Timeout.Infinite).WaitAsync(Timeouts.Short);
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/t", ("te", "trailers"));
        var response = await h2.ReadResponseAsync(1);

        Assert.Equal(200, response.Status);
        Assert.Equal("hello world", response.BodyText);
        Assert.Null(response.Header("transfer-encoding"));
        Assert.Contains(("grpc-status", "0"), response.Trailers);
        Assert.Contains(("x-checksum", "abc"), response.Trailers);
    }

    [Fact]
    public async Task HandleAsync_EmptyContentLengthResponse_StreamEndsWithTheHeaders()
    {
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            var reader = new RawHttpReader(new NetworkStream(socket));
            await RawUpstreamHttp.ReadRequestAsync(reader);
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 5\r\nContent-Length: 0\r\n\r\n");
            await Task.Delay(Timeout.Infinite).WaitAsync(Timeouts.Short);
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/empty");
        var response = await h2.ReadResponseAsync(1);

        Assert.Equal(200, response.Status);
        Assert.Equal("", response.BodyText);
        Assert.Equal("5", response.Header("grpc-status"));
        Assert.Equal("0", response.Header("content-length"));
    }

    [Fact]
    public async Task HandleAsync_ClientResetsWhileUpstreamThinks_UpstreamSeesTheCallAborted()
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            if (ctx.Request.Path == "/slow")
            {
                started.TrySetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, ctx.RequestAborted).WaitAsync(Timeouts.Short);
                }
                catch (OperationCanceledException)
                {
                    aborted.TrySetResult();
                }

                return;
            }

            await ctx.Response.WriteAsync("fine");
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        using var cts = new CancellationTokenSource();
        var call = client.GetAsync("/slow", cts.Token);
        await started.Task.WaitAsync(Timeouts.Short);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.WaitAsync(Timeouts.Short));

        // The RST_STREAM reached the forwarder, which abandoned the upstream exchange (closed its connection).
        await aborted.Task.WaitAsync(Timeouts.Short);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(ProxyErrors.ClientClosed, record.Error);

        // The client connection is sound: the next stream is served.
        using var next = await client.GetAsync("/next").WaitAsync(Timeouts.Short);
        Assert.Equal("fine", await next.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task HandleAsync_ClientResetsMidResponseBody_UpstreamSeesTheCallAbortedAndStopsStreaming()
    {
        var aborted = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            // An endless stream of small writes (a server-streaming call): only the proxy abandoning it ends it.
            var chunk = new byte[1024];
            long sent = 0;
            try
            {
                while (true)
                {
                    await ctx.Response.Body.WriteAsync(chunk, ctx.RequestAborted).AsTask().WaitAsync(Timeouts.Short);
                    await ctx.Response.Body.FlushAsync(ctx.RequestAborted).WaitAsync(Timeouts.Short);
                    sent += chunk.Length;
                    await Task.Delay(5, ctx.RequestAborted);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                aborted.TrySetResult(sent);
            }
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true);
        using var client = proxy.CreateHttp2Client();

        using (var response = await client.GetAsync("/stream", HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeouts.Short))
        {
            await using var body = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[4096];
            var read = 0;
            while (read < 8192)
            {
                var n = await body.ReadAsync(buffer).AsTask().WaitAsync(Timeouts.Short);
                Assert.NotEqual(0, n);
                read += n;
            }

            // Disposing an unfinished HTTP/2 response sends RST_STREAM(CANCEL).
        }

        var sent = await aborted.Task.WaitAsync(Timeouts.Short);
        Assert.True(sent >= 8192, $"the upstream sent {sent} bytes before it saw the abort");
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(ProxyErrors.ClientClosed, record.Error);
    }

    private sealed class UnseekableStream(byte[] data) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = Math.Min(count, Math.Min(data.Length - _position, 50_000));
            Array.Copy(data, _position, buffer, offset, n);
            _position += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

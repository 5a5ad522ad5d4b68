using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Proxy.Core.Transport;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// The session reuses the objects of ended streams (<see cref="Http2ServerStream"/>): every stream still gets its own
/// data, credits and resets, whatever the previous user of its object did (finished, was reset mid-body, was refused).
/// <see cref="Http2Server.StreamObjectsCreated"/> shows the reuse happened.
/// </summary>
public sealed class Http2ServerStreamReuseTests
{
    private const uint RefusedStream = 0x7, Cancel = 0x8;

    /// <summary>
    /// Echoes "path length sha256" of the request body, then the body itself; "/hold" first waits for
    /// <paramref name="release"/>, "/early" answers without reading the body.
    /// </summary>
    private static Task<KestrelUpstream> UpstreamAsync(TaskCompletionSource? release = null, TaskCompletionSource? reading = null) => KestrelUpstream.StartAsync(async ctx =>
    {
        if (ctx.Request.Path == "/early")
        {
            await ctx.Response.WriteAsync("early");
            return;
        }

        if (ctx.Request.Path == "/hold" && release is not null)
        {
            reading?.TrySetResult();
            await release.Task.WaitAsync(Timeouts.Short, ctx.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (ctx.RequestAborted.IsCancellationRequested)
            {
                return;
            }
        }

        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        var bytes = body.ToArray();
        await ctx.Response.WriteAsync($"{ctx.Request.Path} {bytes.Length} {Convert.ToHexString(SHA256.HashData(bytes))}\n");
        await ctx.Response.Body.WriteAsync(bytes);
    });

    private static string Expected(string path, byte[] body) => $"{path} {body.Length} {Convert.ToHexString(SHA256.HashData(body))}\n";

    [Fact]
    public async Task Streams_ManySequentialWithBodies_OneObjectReusedAndEveryStreamItsOwnData()
    {
        await using var upstream = await UpstreamAsync();
        // Small windows: request bodies need WINDOW_UPDATEs, so stale credit state on a reused object would show.
        await using var proxy = await H2Proxy.StartAsync(upstream, new Http2ServerOptions { InitialStreamWindowSize = 65535, InitialConnectionWindowSize = 65535 });
        using var client = proxy.CreateClient();

        for (var i = 0; i < 60; i++)
        {
            var body = RandomNumberGenerator.GetBytes(i % 3 == 0 ? 0 : 1000 * i + i);
            using var request = new HttpRequestMessage(i % 3 == 0 ? HttpMethod.Get : HttpMethod.Post, $"/s/{i}") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            if (body.Length > 0)
            {
                // Every other body is sent without content-length (re-framed chunked towards the upstream).
                request.Content = i % 2 == 0 ? new ByteArrayContent(body) : new UnknownLengthContent(body);
            }

            using var response = await client.SendAsync(request).WaitAsync(Timeouts.Short);
            var received = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Short);

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal([.. System.Text.Encoding.ASCII.GetBytes(Expected($"/s/{i}", body)), .. body], received);
        }

        // One stream at a time: its object carries the next one (a second may exist while the first is being let go).
        Assert.InRange(proxy.Server.StreamObjectsCreated, 1, 2);
    }

    [Fact]
    public async Task Streams_ManyConcurrentWithBodies_ObjectsBoundedByConcurrencyAndEveryStreamItsOwnData()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await H2Proxy.StartAsync(upstream, new Http2ServerOptions { InitialStreamWindowSize = 65535, InitialConnectionWindowSize = 65535 });
        using var client = proxy.CreateClient();
        const int Concurrency = 8, PerWorker = 25;

        var workers = Enumerable.Range(0, Concurrency).Select(async w =>
        {
            for (var i = 0; i < PerWorker; i++)
            {
                var body = RandomNumberGenerator.GetBytes((w * 7919 + i * 1543) % 90_000);
                using var response = await client.PostAsync($"/c/{w}/{i}", new ByteArrayContent(body)).WaitAsync(Timeouts.Short);
                var received = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Short);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal([.. System.Text.Encoding.ASCII.GetBytes(Expected($"/c/{w}/{i}", body)), .. body], received);
            }
        }).ToArray();
        await Task.WhenAll(workers).WaitAsync(Timeouts.Bulk);

        // 200 streams, at most 8 open at once: objects are reused (a stream's object is let go just after its END_STREAM
        // is written, so the client's next stream may briefly need another one).
        Assert.InRange(proxy.Server.StreamObjectsCreated, 1, 2 * Concurrency);
    }

    [Fact]
    public async Task RstStream_FromClientMidBody_ObjectReusedAndLaterStreamsCorrect()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await UpstreamAsync(release, reading);
        await using var proxy = await H2Proxy.StartAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        // Stream 1: a POST whose body is half sent when the client resets it.
        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", "/hold"), ("content-length", "20000"));
        await h2.SendDataAsync(1, new byte[10_000], endStream: false);
        await reading.Task.WaitAsync(Timeouts.Short);
        await h2.SendFrameAsync(H2Frame.RstStream, 0, 1, [0, 0, 0, (byte)Cancel]);
        release.SetResult();

        // Later streams, one at a time, with bodies (content-length and not): each is answered with its own data.
        for (uint id = 3; id <= 21; id += 2)
        {
            var body = RandomNumberGenerator.GetBytes((int)id * 500);
            var chunked = id % 4 == 1;
            if (chunked)
            {
                await h2.SendHeadersAsync(id, false, (":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", $"/after/{id}"));
            }
            else
            {
                await h2.SendHeadersAsync(id, false, (":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", $"/after/{id}"), ("content-length", body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }

            await h2.SendDataAsync(id, body[..(body.Length / 2)], endStream: false);
            await h2.SendDataAsync(id, body[(body.Length / 2)..], endStream: true);
            var response = await h2.ReadResponseAsync(id);

            Assert.Equal(200, response.Status);
            Assert.Equal([.. System.Text.Encoding.ASCII.GetBytes(Expected($"/after/{id}", body)), .. body], response.Body);
        }

        Assert.InRange(proxy.Server.StreamObjectsCreated, 1, 3);
    }

    [Fact]
    public async Task RstStream_AfterTheStreamEnded_DoesNotReachTheStreamReusingItsObject()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await UpstreamAsync(release, reading);
        await using var proxy = await H2Proxy.StartAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/first");
        var first = await h2.ReadResponseAsync(1);
        // Stream 3 (most likely on stream 1's object) is in flight when a late RST_STREAM for stream 1 arrives.
        await h2.SendHeadersAsync(3, false, (":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", "/hold"), ("content-length", "6"));
        await h2.SendDataAsync(3, "abc"u8.ToArray(), endStream: false);
        await reading.Task.WaitAsync(Timeouts.Short);
        await h2.SendFrameAsync(H2Frame.RstStream, 0, 1, [0, 0, 0, (byte)Cancel]);
        await h2.SendDataAsync(3, "def"u8.ToArray(), endStream: true);
        release.SetResult();
        var third = await h2.ReadResponseAsync(3);

        Assert.Equal(Expected("/first", []), first.BodyText);
        Assert.Equal(Expected("/hold", "abcdef"u8.ToArray()) + "abcdef", third.BodyText);
        Assert.Equal(1, proxy.Server.StreamObjectsCreated);
    }

    [Fact]
    public async Task RefusedStream_PastMaxConcurrent_LeavesTheTableAndItsObjectIsReused()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await UpstreamAsync(release, reading);
        await using var proxy = await H2Proxy.StartAsync(upstream, new Http2ServerOptions { MaxConcurrentStreams = 1 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/hold");
        await reading.Task.WaitAsync(Timeouts.Short);
        await h2.SendGetAsync(3, "/refused");
        var (refused, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);
        release.SetResult();
        var held = await h2.ReadResponseAsync(1);

        // With one stream allowed, each of these is served only if the refused stream no longer counts as open.
        var later = new List<H2Response>();
        for (uint id = 5; id <= 15; id += 2)
        {
            await h2.SendGetAsync(id, $"/later/{id}");
            later.Add(await h2.ReadResponseAsync(id));
        }

        Assert.Equal(3u, refused.StreamId);
        Assert.Equal(RefusedStream, refused.ErrorCode);
        Assert.Equal(Expected("/hold", []), held.BodyText);
        for (var i = 0; i < later.Count; i++)
        {
            Assert.Equal(Expected($"/later/{5 + (2 * i)}", []), later[i].BodyText);
        }

        Assert.InRange(proxy.Server.StreamObjectsCreated, 2, 3);
    }

    [Fact]
    public async Task RstStream_OnADrainingStream_LeavesTheTable()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await H2Proxy.StartAsync(upstream, new Http2ServerOptions { MaxConcurrentStreams = 1 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        // Stream 1 is answered before its body ends (the proxy drains the rest), then the client gives up on it.
        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", "/early"), ("content-length", "100000"));
        await h2.SendDataAsync(1, new byte[1000], endStream: false);
        var early = await h2.ReadResponseAsync(1);
        await h2.SendFrameAsync(H2Frame.RstStream, 0, 1, [0, 0, 0, (byte)Cancel]);

        // One stream allowed: stream 3 is served only if the reset draining stream left the table.
        await h2.SendGetAsync(3, "/next");
        var next = await h2.ReadResponseAsync(3);

        Assert.Equal("early", early.BodyText);
        Assert.Equal(Expected("/next", []), next.BodyText);
    }

    /// <summary>A body whose length is not declared: HttpClient sends it over HTTP/2 without content-length.</summary>
    private sealed class UnknownLengthContent(byte[] body) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(body).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    /// <summary>The forwarder behind an <see cref="Http2Server"/> on a Kestrel listener at 127.0.0.1:0 (the test keeps the server to read its counters).</summary>
    private sealed class H2Proxy : IAsyncDisposable
    {
        private readonly KestrelServer _kestrel;
        private readonly SocketTransportFactory _transport;
        private readonly TestUpstreamPool _pool;

        private H2Proxy(KestrelServer kestrel, SocketTransportFactory transport, TestUpstreamPool pool, Http2Server server, IPEndPoint endPoint)
        {
            _kestrel = kestrel;
            _transport = transport;
            _pool = pool;
            Server = server;
            EndPoint = endPoint;
        }

        public Http2Server Server { get; }

        public IPEndPoint EndPoint { get; }

        public static async Task<H2Proxy> StartAsync(KestrelUpstream upstream, Http2ServerOptions? options = null)
        {
            var pool = new TestUpstreamPool();
            var forwarder = new Http1Forwarder("test", pool, new Http1ForwarderOptions());
            var server = new Http2Server(forwarder, options);
            var routing = Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint));
            var kestrelOptions = new KestrelServerOptions();
            ListenOptions? listen = null;
            kestrelOptions.Listen(new IPEndPoint(IPAddress.Loopback, 0), lo =>
            {
                listen = lo;
                lo.Use(_ => ctx => server.HandleAsync(ctx, routing, ctx.ConnectionClosed));
            });
            var transport = new SocketTransportFactory(null, NullLoggerFactory.Instance);
            var kestrel = new KestrelServer(Options.Create(kestrelOptions), transport, NullLoggerFactory.Instance);
            await kestrel.StartAsync(new NoApplication(), CancellationToken.None).WaitAsync(Timeouts.Short);
            return new H2Proxy(kestrel, transport, pool, server, listen!.IPEndPoint!);
        }

        public HttpClient CreateClient()
        {
            var handler = new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None, EnableMultipleHttp2Connections = false };
            return new HttpClient(handler)
            {
                BaseAddress = new Uri($"http://{EndPoint}"),
                Timeout = Timeouts.Bulk,
                DefaultRequestVersion = HttpVersion.Version20,
                DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
        }

        public async ValueTask DisposeAsync()
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _kestrel.StopAsync(stop.Token).WaitAsync(Timeouts.Short);
            _kestrel.Dispose();
            _transport.Dispose();
            _pool.Dispose();
        }

        private sealed class NoApplication : IHttpApplication<object>
        {
            public object CreateContext(IFeatureCollection contextFeatures) => throw new InvalidOperationException("HTTP must not be reached.");

            public void DisposeContext(object context, Exception? exception)
            {
            }

            public Task ProcessRequestAsync(object context) => throw new InvalidOperationException("HTTP must not be reached.");
        }
    }
}

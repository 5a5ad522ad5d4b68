using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Tcp;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Tcp;

/// <summary>
/// The opaque TCP stage end to end: a client socket -> Kestrel with OUR transport -> TcpProxy ->
/// a plain upstream socket, all on 127.0.0.1 with port 0.
/// </summary>
public sealed class TcpProxyTests
{
    private sealed class ProxyUnderTest : IAsyncDisposable
    {
        private ProxyUnderTest(KestrelTestServer server, UpstreamConnector connector, ProxyMetrics metrics, MetricsRecorder recorder, RecordingLogger<TcpProxy> logger)
        {
            Logger = logger;
            Server = server;
            Connector = connector;
            Metrics = metrics;
            Recorder = recorder;
        }

        public KestrelTestServer Server { get; }

        public UpstreamConnector Connector { get; }

        public ProxyMetrics Metrics { get; }

        public MetricsRecorder Recorder { get; }

        public RecordingLogger<TcpProxy> Logger { get; }

        public IPEndPoint EndPoint => Server.EndPoint;

        /// <summary>Released once per connection whose handler has returned (rejected ones included).</summary>
        public SemaphoreSlim Handled { get; } = new(0);

        public static async Task<ProxyUnderTest> StartAsync(
            IPEndPoint target,
            UpstreamConnectorOptions? connectorOptions = null,
            TcpProxyContext? context = null,
            ConnectionLimiter? limiter = null,
            SocketTransportOptions? transportOptions = null,
            bool startDownstreamFirst = false)
        {
            var metrics = new ProxyMetrics();
            var recorder = new MetricsRecorder(metrics);
            connectorOptions ??= new UpstreamConnectorOptions();
            if (transportOptions is not null)
            {
                connectorOptions = connectorOptions with { Transport = transportOptions };
            }

            var connector = new UpstreamConnector(connectorOptions);
            var logger = new RecordingLogger<TcpProxy>();
            var proxy = new TcpProxy(connector, metrics, logger);
            context ??= new TcpProxyContext("test-listener", "test-service");
            var destination = new UpstreamAddress(target);

            ProxyUnderTest? self = null;
            async Task HandleAsync(ConnectionContext connection)
            {
                try
                {
                    if (limiter is not null && !limiter.TryAcquire())
                    {
                        limiter.Reject(connection, metrics, context.ListenerName);
                        return;
                    }

                    if (startDownstreamFirst)
                    {
                        // Like a protocol detector that peeked: the transport has started reading.
                        Assert.NotNull(connection.Transport);
                    }

                    try
                    {
                        await proxy.HandleAsync(connection, destination, context, CancellationToken.None);
                    }
                    finally
                    {
                        limiter?.Release();
                    }
                }
                finally
                {
                    self!.Handled.Release();
                }
            }

            var server = await KestrelTestServer.StartAsync(HandleAsync, transportOptions);
            self = new ProxyUnderTest(server, connector, metrics, recorder, logger);
            return self;
        }

        public async ValueTask DisposeAsync()
        {
            await Server.DisposeAsync();
            Connector.Dispose();
            Recorder.Dispose();
            Metrics.Dispose();
            Handled.Dispose();
        }
    }

    /// <summary>Scheduling variants: inline (the default), I/O queues, plain thread pool.</summary>
    public static TheoryData<string, long> BulkVariants() => new()
    {
        { "inline", 100L * 1024 * 1024 },
        { "ioqueues", 16L * 1024 * 1024 },
        { "threadpool", 16L * 1024 * 1024 },
    };

    private static SocketTransportOptions TransportVariant(string variant) => variant switch
    {
        "inline" => new SocketTransportOptions(),
        "ioqueues" => new SocketTransportOptions { InlineScheduling = false, IoQueueCount = 2 },
        "threadpool" => new SocketTransportOptions { InlineScheduling = false, IoQueueCount = 0, WaitForDataBeforeAllocatingBuffer = false },
        _ => throw new ArgumentOutOfRangeException(nameof(variant)),
    };

    [Theory]
    [MemberData(nameof(BulkVariants))]
    public async Task HandleAsync_BulkEachWayConcurrently_ArrivesByteExact(string variant, long size)
    {
        using var upstreamListener = TestListener.Start();
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, transportOptions: TransportVariant(variant));

        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        var clientSends = Task.Run(async () =>
        {
            var hash = await client.SendPatternAsync(size, seed: 1);
            client.Shutdown(SocketShutdown.Send);
            return hash;
        });
        var upstreamSends = Task.Run(async () =>
        {
            var hash = await upstream.SendPatternAsync(size, seed: 2);
            upstream.Shutdown(SocketShutdown.Send);
            return hash;
        });
        var upstreamReceives = Task.Run(upstream.ReceiveAndHashAsync);
        var clientReceives = Task.Run(client.ReceiveAndHashAsync);

        await Task.WhenAll(clientSends, upstreamSends, upstreamReceives, clientReceives).WaitAsync(TestTimeouts.Bulk);

        var (upCount, upHash) = await upstreamReceives;
        var (downCount, downHash) = await clientReceives;
        Assert.Equal(size, upCount);
        Assert.Equal(size, downCount);
        Assert.Equal(await clientSends, upHash);
        Assert.Equal(await upstreamSends, downHash);
        Assert.Equal(size, proxy.Recorder.Sum("proxy_tcp_bytes_to_upstream", "service", "test-service"));
        Assert.Equal(size, proxy.Recorder.Sum("proxy_tcp_bytes_to_downstream", "listener", "test-listener"));
    }

    [Theory]
    [InlineData("inline")]
    [InlineData("ioqueues")]
    [InlineData("threadpool")]
    public async Task HandleAsync_ClientHalfCloses_UpstreamReadsToEofThenAnswerArrivesThenEof(string variant)
    {
        using var upstreamListener = TestListener.Start();
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, transportOptions: TransportVariant(variant));
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        await client.SendAllAsync(Encoding.ASCII.GetBytes("whole request"));
        client.Shutdown(SocketShutdown.Send);

        // The upstream only answers once it has seen EOF: proves the FIN went through alone.
        Assert.Equal("whole request", Encoding.ASCII.GetString(await upstream.ReadToEndAsync()));
        await upstream.SendAllAsync(Encoding.ASCII.GetBytes("answer after eof"));
        upstream.Shutdown(SocketShutdown.Send);

        Assert.Equal("answer after eof", Encoding.ASCII.GetString(await client.ReadToEndAsync()));
        Assert.Equal(13, proxy.Recorder.Sum("proxy_tcp_bytes_to_upstream"));
        Assert.Equal(16, proxy.Recorder.Sum("proxy_tcp_bytes_to_downstream"));
    }

    [Fact]
    public async Task HandleAsync_ServerSpeaksFirst_ClientReceivesBannerWithoutSending()
    {
        using var upstreamListener = TestListener.Start();
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint);
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        await upstream.SendAllAsync(Encoding.ASCII.GetBytes("220 banner\r\n"));

        Assert.Equal("220 banner\r\n", Encoding.ASCII.GetString(await client.ReadExactlyAsync(12)));
    }

    [Fact]
    public async Task HandleAsync_ClientResets_UpstreamSeesReset()
    {
        using var upstreamListener = TestListener.Start();
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint);
        var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();
        await client.SendAllAsync(Encoding.ASCII.GetBytes("x"));
        Assert.Equal("x", Encoding.ASCII.GetString(await upstream.ReadExactlyAsync(1)));

        client.Reset();

        Assert.Equal(SocketError.ConnectionReset, await upstream.ReadUntilEndAsync());
    }

    [Theory]
    [InlineData("inline")]
    [InlineData("ioqueues")]
    public async Task HandleAsync_UpstreamResets_ClientSeesReset(string variant)
    {
        using var upstreamListener = TestListener.Start();
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, transportOptions: TransportVariant(variant));
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        var upstream = await upstreamListener.AcceptAsync();
        await upstream.SendAllAsync(Encoding.ASCII.GetBytes("y"));
        Assert.Equal("y", Encoding.ASCII.GetString(await client.ReadExactlyAsync(1)));

        upstream.Reset();

        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());
    }

    [Fact]
    public async Task HandleAsync_UpstreamRefused_ClientSeesResetPromptlyAndFailureCounted()
    {
        var target = TestSockets.UnusedEndPoint();
        await using var proxy = await ProxyUnderTest.StartAsync(target);
        var stopwatch = Stopwatch.StartNew();

        Assert.Equal(SocketError.ConnectionReset, await TestSockets.ConnectAndReadUntilEndAsync(proxy.EndPoint));

        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"reset took {stopwatch.Elapsed}");
        Assert.Equal(1, proxy.Recorder.Sum("proxy_tcp_connect_failures", "cause", "refused"));
        Assert.Equal(0, proxy.Recorder.Sum("proxy_tcp_connect_failures", "cause", "timeout"));
        var entry = Assert.Single(proxy.Logger.Entries, e => e.Id.Id == 1201);
        Assert.Equal(
            $"test-listener: connect to {target} for service test-service failed: connection refused; the client connection was reset",
            entry.Message);
    }

    [Fact]
    public async Task HandleAsync_UpstreamNeverAnswers_ClientSeesResetAfterConnectTimeout()
    {
        using var full = await FullBacklogListener.StartAsync();
        var timeout = TimeSpan.FromMilliseconds(400);
        await using var proxy = await ProxyUnderTest.StartAsync(full.EndPoint, new UpstreamConnectorOptions { ConnectTimeout = timeout });

        // Timed from before the connect: the proxy accepts (and starts its upstream connect) as soon as the kernel
        // completes the handshake, which can be well before this test's continuation runs on a busy machine.
        var stopwatch = Stopwatch.StartNew();
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);

        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());

        Assert.True(stopwatch.Elapsed >= timeout - TimeSpan.FromMilliseconds(50), $"reset came after only {stopwatch.Elapsed}");
        Assert.Equal(1, proxy.Recorder.Sum("proxy_tcp_connect_failures", "cause", "timeout"));
    }

    [Fact]
    public async Task HandleAsync_OverConnectionLimit_ResetsAndCountsRejection()
    {
        using var upstreamListener = TestListener.Start();
        var limiter = new ConnectionLimiter(1);
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, limiter: limiter);

        // The first connection holds the only slot while it is proxied.
        var first = await TestSockets.ConnectAsync(proxy.EndPoint);
        var firstUpstream = await upstreamListener.AcceptAsync();
        await first.SendAllAsync(Encoding.ASCII.GetBytes("1"));
        Assert.Equal("1", Encoding.ASCII.GetString(await firstUpstream.ReadExactlyAsync(1)));

        Assert.Equal(SocketError.ConnectionReset, await TestSockets.ConnectAndReadUntilEndAsync(proxy.EndPoint));
        Assert.Equal(1, proxy.Recorder.Sum("proxy_tcp_connections_rejected", "limit", "max_connections"));

        // Closing the first frees the slot for the next client.
        first.Shutdown(SocketShutdown.Send);
        Assert.Empty(await firstUpstream.ReadToEndAsync());
        firstUpstream.Shutdown(SocketShutdown.Send);
        Assert.Empty(await first.ReadToEndAsync());
        first.Dispose();
        firstUpstream.Dispose();

        // Both handlers (the rejected one and the first) have returned: the slot is free again.
        Assert.True(await proxy.Handled.WaitAsync(TestTimeouts.Short));
        Assert.True(await proxy.Handled.WaitAsync(TestTimeouts.Short));
        Assert.Equal(0, limiter.Current);

        using var third = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var thirdUpstream = await upstreamListener.AcceptAsync();
        await third.SendAllAsync(Encoding.ASCII.GetBytes("3"));
        Assert.Equal("3", Encoding.ASCII.GetString(await thirdUpstream.ReadExactlyAsync(1)));
    }

    [Fact]
    public async Task HandleAsync_SpliceSupported_HandsBothUntouchedSocketsToRawForwarder()
    {
        using var upstreamListener = TestListener.Start();
        var raw = new CopyingRawForwarder();
        var context = new TcpProxyContext("test-listener", "test-service") { RawForwarder = raw, SpliceMode = SpliceMode.Auto };
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, context: context);
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        await client.SendAllAsync(Encoding.ASCII.GetBytes("spliced?"));
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal("spliced?", Encoding.ASCII.GetString(await upstream.ReadToEndAsync()));
        await upstream.SendAllAsync(Encoding.ASCII.GetBytes("yes"));
        upstream.Shutdown(SocketShutdown.Send);

        Assert.Equal("yes", Encoding.ASCII.GetString(await client.ReadToEndAsync()));
        Assert.Equal(1, raw.Calls);
        Assert.Equal(8, proxy.Recorder.Sum("proxy_tcp_bytes_to_upstream"));
    }

    [Fact]
    public async Task HandleAsync_SpliceModeNever_ForwardsThroughPipes()
    {
        using var upstreamListener = TestListener.Start();
        var raw = new CopyingRawForwarder();
        var context = new TcpProxyContext("test-listener", "test-service") { RawForwarder = raw, SpliceMode = SpliceMode.Never };
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, context: context);
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        await client.SendAllAsync(Encoding.ASCII.GetBytes("pipes"));
        client.Shutdown(SocketShutdown.Send);

        Assert.Equal("pipes", Encoding.ASCII.GetString(await upstream.ReadToEndAsync()));
        Assert.Equal(0, raw.Calls);
    }

    [Fact]
    public async Task HandleAsync_SpliceAlwaysButDownstreamAlreadyRead_FallsBackToPipesAndWarns()
    {
        using var upstreamListener = TestListener.Start();
        var raw = new CopyingRawForwarder();
        var context = new TcpProxyContext("test-listener", "test-service") { RawForwarder = raw, SpliceMode = SpliceMode.Always };
        await using var proxy = await ProxyUnderTest.StartAsync(upstreamListener.EndPoint, context: context, startDownstreamFirst: true);
        using var client = await TestSockets.ConnectAsync(proxy.EndPoint);
        using var upstream = await upstreamListener.AcceptAsync();

        await client.SendAllAsync(Encoding.ASCII.GetBytes("peeked"));
        client.Shutdown(SocketShutdown.Send);

        Assert.Equal("peeked", Encoding.ASCII.GetString(await upstream.ReadToEndAsync()));
        Assert.Equal(0, raw.Calls);
        Assert.Contains(proxy.Logger.Entries, e => e.Id.Id == 1203);
    }

    /// <summary>A real (if plain) raw-socket forwarder: copies with Receive/Send and propagates FIN.</summary>
    private sealed class CopyingRawForwarder : IRawSocketForwarder
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public bool IsSupported => true;

        public async ValueTask<TcpForwardResult> ForwardAsync(Socket downstream, Socket upstream, TcpForwardOptions options, IForwardObserver? observer, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            try
            {
                var up = PumpAsync(downstream, upstream, n => observer?.OnBytesToUpstream(n));
                var down = PumpAsync(upstream, downstream, n => observer?.OnBytesToDownstream(n));
                return new TcpForwardResult(TcpForwardOutcome.Completed, await up, await down);
            }
            finally
            {
                downstream.Dispose();
                upstream.Dispose();
            }
        }

        private static async Task<long> PumpAsync(Socket from, Socket to, Action<int> count)
        {
            var buffer = new byte[8192];
            long total = 0;
            while (true)
            {
                var n = await from.ReceiveAsync(buffer.AsMemory());
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return total;
                }

                await to.SendAllAsync(buffer.AsMemory(0, n));
                count(n);
                total += n;
            }
        }
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Proxy.Core.Addresses;
using Proxy.Core.Detection;
using Proxy.Core.Metrics;
using Proxy.Core.Tcp;
using Proxy.Core.Tcp.Splice;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Detection;

/// <summary>The portable fallback (zero-byte receive, then polling) instead of the epoll waiter: same tests.</summary>
public sealed class ProtocolDetectorFallbackTests : ProtocolDetectorTests
{
    protected override bool UseWaiter => false;
}

/// <summary>
/// The detector over real sockets on 127.0.0.1:0: a client socket and the accepted socket it peeks. Runs with the
/// epoll waiter (Linux), and again through <see cref="ProtocolDetectorFallbackTests"/> with the portable fallback.
/// </summary>
public class ProtocolDetectorTests
{
    protected virtual bool UseWaiter => OperatingSystem.IsLinux();

    private static readonly byte[] Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

    private sealed class Pair : IDisposable
    {
        private readonly TestListener _listener;

        private Pair(TestListener listener, Socket client, Socket accepted)
        {
            _listener = listener;
            Client = client;
            Accepted = accepted;
        }

        public Socket Client { get; }

        public Socket Accepted { get; }

        public static async Task<Pair> CreateAsync()
        {
            var listener = TestListener.Start();
            var client = await TestSockets.ConnectAsync(listener.EndPoint);
            var accepted = await listener.AcceptAsync();
            return new Pair(listener, client, accepted);
        }

        public void Dispose()
        {
            Client.Dispose();
            Accepted.Dispose();
            _listener.Dispose();
        }
    }

    private ProtocolDetector NewDetector(ProxyMetrics metrics, TimeSpan? timeout = null, IReadOnlyList<int>? opaquePorts = null)
        => new(
            "test",
            new ProtocolDetectorOptions { Timeout = timeout ?? TimeSpan.FromSeconds(30), OpaquePorts = opaquePorts ?? ProtocolDetectorOptions.DefaultOpaquePorts },
            metrics,
            null,
            null,
            UseWaiter ? ReadableWaiter.Shared : null);

    public static TheoryData<string, byte[], Protocol> Starts() => new()
    {
        { "http1", Encoding.ASCII.GetBytes("GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n"), Protocol.Http1 },
        { "h2", [.. Preface, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00], Protocol.Http2 },
        { "tls", ProtocolClassifierTests.ClientHello, Protocol.Tls },
        { "opaque", [0x00, 0x01, 0xFE, 0x7F, 0x80, 0x42, 0x13, 0x37], Protocol.Opaque },
    };

    [Theory]
    [MemberData(nameof(Starts))]
    public async Task DetectAsync_ClientSendsFirstBytes_DetectsAndConsumesNothing(string tag, byte[] bytes, Protocol expected)
    {
        using var metrics = new ProxyMetrics();
        using var recorder = new MetricsRecorder(metrics);
        var detector = NewDetector(metrics);
        using var pair = await Pair.CreateAsync();

        var detection = detector.DetectAsync(pair.Accepted, 8080).AsTask();
        await pair.Client.SendAllAsync(bytes);
        var result = await detection.WaitAsync(TestTimeouts.Short);

        Assert.Equal(expected, result.Protocol);
        Assert.Equal(DetectionOutcome.Detected, result.Outcome);
        Assert.InRange(result.BytesPeeked, 1, ProtocolClassifier.MaxBytes);
        Assert.Equal(tag, result.MetricTag);
        Assert.Equal(1, recorder.Sum("proxy_detect", "protocol", tag));

        // Nothing consumed: every byte is still there for whoever reads next.
        Assert.Equal(bytes, await pair.Accepted.ReadExactlyAsync(bytes.Length));
    }

    [Fact]
    public async Task DetectAsync_BytesAlreadyQueued_CompletesSynchronouslyWithoutAllocating()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics);
        using var pair = await Pair.CreateAsync();
        await pair.Client.SendAllAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());
        await WaitUntilQueuedAsync(pair.Accepted, 18);

        // Warm up (first-call JIT and lazy statics), then measure.
        var first = detector.DetectAsync(pair.Accepted, 80);
        Assert.True(first.IsCompletedSuccessfully);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var second = detector.DetectAsync(pair.Accepted, 80);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(second.IsCompletedSuccessfully);
        Assert.Equal(Protocol.Http1, (await second).Protocol);
        await first;
        Assert.Equal(0, allocated);
    }

    [Fact]
    public async Task DetectAsync_BytesSplitAcrossSegments_StillClassifies()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics);
        using var pair = await Pair.CreateAsync();

        // Preface in four TCP segments (NoDelay), each sent once the previous one is queued at the receiver.
        var detection = detector.DetectAsync(pair.Accepted, 8080).AsTask();
        int[] cuts = [0, 3, 9, 17, Preface.Length];
        for (var i = 0; i < cuts.Length - 1; i++)
        {
            await pair.Client.SendAllAsync(Preface.AsMemory(cuts[i], cuts[i + 1] - cuts[i]));
            await WaitUntilQueuedAsync(pair.Accepted, cuts[i + 1]);
            if (i < cuts.Length - 2)
            {
                Assert.False(detection.IsCompleted, $"decided after only {cuts[i + 1]} bytes");
            }
        }

        var result = await detection.WaitAsync(TestTimeouts.Short);
        Assert.Equal(Protocol.Http2, result.Protocol);
        Assert.Equal(DetectionOutcome.Detected, result.Outcome);
        Assert.Equal(Preface.Length, result.BytesPeeked);

        // The waiter raised SO_RCVLOWAT while waiting; the socket must be back to the default for the transport.
        Assert.Equal(1, (int)pair.Accepted.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater)!);
        Assert.Equal(Preface, await pair.Accepted.ReadExactlyAsync(Preface.Length));
    }

    [Fact]
    public async Task DetectAsync_ClientSendsNothing_TimesOutAsOpaque()
    {
        using var metrics = new ProxyMetrics();
        using var recorder = new MetricsRecorder(metrics);
        var detector = NewDetector(metrics, TimeSpan.FromMilliseconds(200));
        using var pair = await Pair.CreateAsync();

        var watch = Stopwatch.StartNew();
        var result = await detector.DetectAsync(pair.Accepted, 8080).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(DetectionOutcome.TimedOut, result.Outcome);
        Assert.Equal(Protocol.Opaque, result.Protocol);
        Assert.Equal(0, result.BytesPeeked);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(150), $"timed out after {watch.Elapsed}");
        Assert.Equal(1, recorder.Sum("proxy_detect", "protocol", "timeout"));
    }

    [Fact]
    public async Task DetectAsync_PrefixThenSilence_TimesOutWithPeekedCount()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics, TimeSpan.FromMilliseconds(300));
        using var pair = await Pair.CreateAsync();
        await pair.Client.SendAllAsync("GE"u8.ToArray());

        var result = await detector.DetectAsync(pair.Accepted, 8080).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(DetectionOutcome.TimedOut, result.Outcome);
        Assert.Equal(2, result.BytesPeeked);
        Assert.Equal("GE", Encoding.ASCII.GetString(await pair.Accepted.ReadExactlyAsync(2)));
    }

    [Fact]
    public async Task DetectAsync_PrefixThenFin_ClientClosedWithWaiterElseTimeout()
    {
        using var metrics = new ProxyMetrics();
        // The fallback's timeout must leave it time to poll the queued bytes at least once on a loaded CI machine
        // (300 ms was seen to expire before its first poll after the bytes arrived).
        var detector = NewDetector(metrics, TimeSpan.FromMilliseconds(UseWaiter ? 30_000 : 2_000));
        using var pair = await Pair.CreateAsync();
        var detection = detector.DetectAsync(pair.Accepted, 8080).AsTask();
        await pair.Client.SendAllAsync("POS"u8.ToArray());
        await WaitUntilQueuedAsync(pair.Accepted, 3);
        pair.Client.Shutdown(SocketShutdown.Send);

        var result = await detection.WaitAsync(TestTimeouts.Short);

        // The waiter sees the FIN (EPOLLRDHUP); the fallback cannot and waits for its timeout.
        Assert.Equal(UseWaiter ? DetectionOutcome.ClientClosed : DetectionOutcome.TimedOut, result.Outcome);
        Assert.Equal(Protocol.Opaque, result.Protocol);
        Assert.Equal(3, result.BytesPeeked);
    }

    [Fact]
    public async Task DetectAsync_ManyConcurrentSplitClients_AllClassify()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics);
        var pairs = new List<Pair>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                pairs.Add(await Pair.CreateAsync());
            }

            var detections = new List<Task<DetectionResult>>();
            foreach (var pair in pairs)
            {
                detections.Add(detector.DetectAsync(pair.Accepted, 8080).AsTask());
                await pair.Client.SendAllAsync("OPTI"u8.ToArray());
            }

            foreach (var pair in pairs)
            {
                await WaitUntilQueuedAsync(pair.Accepted, 4);
                await pair.Client.SendAllAsync("ONS * HTTP/1.1\r\n"u8.ToArray());
            }

            foreach (var detection in detections)
            {
                var result = await detection.WaitAsync(TestTimeouts.Short);
                Assert.Equal(Protocol.Http1, result.Protocol);
            }
        }
        finally
        {
            foreach (var pair in pairs)
            {
                pair.Dispose();
            }
        }
    }

    [Fact]
    public async Task DetectAsync_OpaquePort_SkipsWithoutWaiting()
    {
        using var metrics = new ProxyMetrics();
        using var recorder = new MetricsRecorder(metrics);
        var detector = NewDetector(metrics, TimeSpan.FromSeconds(30), [3306]);
        using var pair = await Pair.CreateAsync();

        var detection = detector.DetectAsync(pair.Accepted, 3306);

        Assert.True(detection.IsCompletedSuccessfully);
        Assert.Equal(DetectionOutcome.Skipped, (await detection).Outcome);
        Assert.True(detector.IsOpaquePort(3306));
        Assert.False(detector.IsOpaquePort(3307));
        Assert.Equal(0, recorder.Sum("proxy_detect"));
    }

    [Fact]
    public async Task DetectAsync_ClientClosesWithoutSending_IsClientClosedOpaque()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics);
        using var pair = await Pair.CreateAsync();
        pair.Client.Shutdown(SocketShutdown.Send);

        var result = await detector.DetectAsync(pair.Accepted, 8080).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(DetectionOutcome.ClientClosed, result.Outcome);
        Assert.Equal("opaque", result.MetricTag);
    }

    [Fact]
    public async Task DetectAsync_ClientResets_IsFailed()
    {
        using var metrics = new ProxyMetrics();
        using var recorder = new MetricsRecorder(metrics);
        var detector = NewDetector(metrics);
        using var pair = await Pair.CreateAsync();
        pair.Client.Reset();

        var result = await detector.DetectAsync(pair.Accepted, 8080).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(DetectionOutcome.Failed, result.Outcome);
        Assert.Equal(0, recorder.Sum("proxy_detect"));
    }

    [Fact]
    public async Task DetectAsync_Cancelled_IsFailedPromptly()
    {
        using var metrics = new ProxyMetrics();
        var detector = NewDetector(metrics, TimeSpan.FromSeconds(30));
        using var pair = await Pair.CreateAsync();
        using var cts = new CancellationTokenSource();

        var detection = detector.DetectAsync(pair.Accepted, 8080, cts.Token).AsTask();
        cts.Cancel();
        var result = await detection.WaitAsync(TestTimeouts.Short);

        Assert.Equal(DetectionOutcome.Failed, result.Outcome);
    }

    [Fact]
    public void Constructor_PortOutOfRange_Throws()
    {
        using var metrics = new ProxyMetrics();
        Assert.Throws<ArgumentOutOfRangeException>(() => NewDetector(metrics, opaquePorts: [65536]));
        Assert.Throws<ArgumentOutOfRangeException>(() => NewDetector(metrics, timeout: TimeSpan.Zero));
    }

    /// <summary>
    /// Detection in front of the opaque TCP stage, through Kestrel and OUR transport: after an Opaque or timed-out
    /// detection the client socket can still be taken over (splice), and the peeked bytes reach the upstream.
    /// </summary>
    [Theory]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public async Task DetectThenTcpProxy_OpaqueOrTimeout_TakeOverSucceedsAndPeekedBytesAreForwarded(bool splice, bool serverSpeaksFirst)
    {
        Assert.Equal(OperatingSystem.IsLinux(), SpliceForwarder.IsSupportedOnThisMachine);
        using var upstreamListener = TestListener.Start();
        using var metrics = new ProxyMetrics();
        using var recorder = new MetricsRecorder(metrics);
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions());
        using var spliceForwarder = splice ? new SpliceForwarder() : null;
        var tcpLogger = new RecordingLogger<TcpProxy>();
        var tcp = new TcpProxy(connector, metrics, tcpLogger);
        var context = new TcpProxyContext("test", "svc") { RawForwarder = spliceForwarder, SpliceMode = splice ? SpliceMode.Always : SpliceMode.Never };
        var detector = NewDetector(metrics, serverSpeaksFirst ? TimeSpan.FromMilliseconds(200) : TimeSpan.FromSeconds(30));
        var detected = new TaskCompletionSource<(DetectionResult Result, bool CanTakeOver)>(TaskCreationOptions.RunContinuationsAsynchronously);

        await using var server = await KestrelTestServer.StartAsync(async connection =>
        {
            var socket = connection.Features.Get<IConnectionSocketFeature>()!.Socket;
            var result = await detector.DetectAsync(socket, 9999);
            detected.TrySetResult((result, connection.Features.Get<ITakeOverSocketFeature>()!.CanTakeOver));
            await tcp.HandleAsync(connection, new UpstreamAddress(upstreamListener.EndPoint), context, CancellationToken.None);
        });

        using var client = await TestSockets.ConnectAsync(server.EndPoint);
        byte[] opaque = [0xCA, 0xFE, 0x00, 0x01, 0x02];
        if (!serverSpeaksFirst)
        {
            await client.SendAllAsync(opaque);
        }

        var (result, canTakeOver) = await detected.Task.WaitAsync(TestTimeouts.Short);
        Assert.Equal(Protocol.Opaque, result.Protocol);
        Assert.Equal(serverSpeaksFirst ? DetectionOutcome.TimedOut : DetectionOutcome.Detected, result.Outcome);
        Assert.True(canTakeOver);

        using var upstream = await upstreamListener.AcceptAsync();
        if (serverSpeaksFirst)
        {
            // The banner gets through L4 after the timeout, then the client answers.
            await upstream.SendAllAsync("220 ready\r\n"u8.ToArray());
            Assert.Equal("220 ready\r\n", Encoding.ASCII.GetString(await client.ReadExactlyAsync(11)));
            await client.SendAllAsync(opaque);
        }

        Assert.Equal(opaque, await upstream.ReadExactlyAsync(opaque.Length));
        await upstream.SendAllAsync("ok"u8.ToArray());
        Assert.Equal("ok", Encoding.ASCII.GetString(await client.ReadExactlyAsync(2)));
        client.Shutdown(SocketShutdown.Send);
        Assert.Empty(await upstream.ReadToEndAsync());
        upstream.Shutdown(SocketShutdown.Send);
        Assert.Empty(await client.ReadToEndAsync());

        // SpliceMode.Always warns (event 1203) when the client socket could not be taken over.
        Assert.DoesNotContain(tcpLogger.Entries, e => e.Id.Id == 1203);
        Assert.Equal(1, recorder.Sum("proxy_detect", "protocol", serverSpeaksFirst ? "timeout" : "opaque"));
    }

    private static async Task WaitUntilQueuedAsync(Socket socket, int count)
    {
        // Polls the receive queue length; each step yields to the timer (never blocks the thread), bounded overall.
        var deadline = Stopwatch.StartNew();
        while (socket.Available < count)
        {
            Assert.True(deadline.Elapsed < TestTimeouts.Short, $"only {socket.Available} of {count} bytes arrived");
            await Task.Delay(1);
        }
    }
}

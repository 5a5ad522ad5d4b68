using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Detection;
using Proxy.Core.Metrics;

namespace Proxy.Bench.Micro;

/// <summary>
/// Protocol detection cost per connection: the pure classifier on each kind of first bytes, and the detector's
/// fast path (bytes already queued: one recv(MSG_PEEK) and the classifier) on a real loopback socket whose queued
/// bytes are never consumed, so every call peeks the same request. Both must allocate 0 B.
/// </summary>
[MemoryDiagnoser]
public class ProtocolDetectionBenchmarks
{
    private static readonly byte[] Http1 = "GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray();
    private static readonly byte[] Http2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
    private static readonly byte[] Tls = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03];
    private static readonly byte[] Opaque = [0x00, 0x01, 0xFE, 0x7F, 0x80, 0x42, 0x13, 0x37];

    private Socket? _listener;
    private Socket? _client;
    private Socket? _accepted;
    private ProxyMetrics? _metrics;
    private ProtocolDetector? _detector;

    [GlobalSetup]
    public void Setup()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _client.Connect(_listener.LocalEndPoint!);
        _accepted = _listener.Accept();
        _client.Send(Http1);
        while (_accepted.Available < Http1.Length)
        {
            Thread.Yield();
        }

        _metrics = new ProxyMetrics();
        _detector = new ProtocolDetector("bench", new ProtocolDetectorOptions(), _metrics);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client?.Dispose();
        _accepted?.Dispose();
        _listener?.Dispose();
        _metrics?.Dispose();
    }

    [Benchmark]
    public bool ClassifyHttp1() => ProtocolClassifier.TryClassify(Http1, out _);

    [Benchmark]
    public bool ClassifyHttp2() => ProtocolClassifier.TryClassify(Http2, out _);

    [Benchmark]
    public bool ClassifyTls() => ProtocolClassifier.TryClassify(Tls, out _);

    [Benchmark]
    public bool ClassifyOpaque() => ProtocolClassifier.TryClassify(Opaque, out _);

    [Benchmark]
    public Protocol DetectQueuedHttp1()
    {
        var detection = _detector!.DetectAsync(_accepted!, 8080);
        if (!detection.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("The fast path should complete synchronously.");
        }

        return detection.Result.Protocol;
    }
}

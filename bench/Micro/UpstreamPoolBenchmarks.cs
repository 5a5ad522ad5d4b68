using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Upstream;

namespace Proxy.Bench.Micro;

/// <summary>
/// The pool's per-request cost when an idle keep-alive connection is there: rent (dictionary lookup, endpoint lock,
/// LIFO pop, idle-age check, non-blocking liveness check on the input pipe) plus return (stamp, push). The connection
/// is a real loopback TCP connection with its receive loop running. <c>Exported</c> adds a Prometheus exporter
/// listening to the pool's counters. Expected: 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class UpstreamPoolBenchmarks
{
    private Socket _listener = null!;
    private Socket _serverSide = null!;
    private UpstreamConnector _connector = null!;
    private ProxyMetrics _metrics = null!;
    private PrometheusExporter? _exporter;
    private UpstreamPool _pool = null!;
    private UpstreamAddress _address;

    [Params(false, true)]
    public bool Exported { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        _address = new UpstreamAddress((IPEndPoint)_listener.LocalEndPoint!);
        _connector = new UpstreamConnector();
        _metrics = new ProxyMetrics();
        _exporter = Exported ? new PrometheusExporter(_metrics.Meter) : null;
        _pool = new UpstreamPool(_connector, metrics: _metrics);

        var rent = _pool.RentAsync(_address, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        if (!rent.IsSuccess)
        {
            throw new InvalidOperationException(rent.Failure.ToString());
        }

        _serverSide = _listener.Accept();

        // Start the connection's loops (as a forwarder would by using it) before it goes idle.
        _ = rent.Connection!.Connection.Transport;
        _pool.Return(rent.Connection, reusable: true);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _exporter?.Dispose();
        _metrics.Dispose();
        _connector.Dispose();
        _serverSide.Dispose();
        _listener.Dispose();
    }

    [Benchmark]
    public int RentReturnIdle()
    {
        var rent = _pool.RentAsync(_address, CancellationToken.None);

        // Always completed synchronously here (an idle connection is there): no await, no state machine.
        if (!rent.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("An idle rent must complete synchronously.");
        }

        var connection = rent.Result.Connection!;
        _pool.Return(connection, reusable: true);
        return connection.UseCount;
    }
}

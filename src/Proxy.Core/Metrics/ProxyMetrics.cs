using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Proxy.Core.Metrics;

/// <summary>
/// The proxy's instruments (System.Diagnostics.Metrics). The admin listener exports them in
/// Prometheus text format. Tags are bounded: listener name, service name, failure cause.
/// </summary>
public sealed class ProxyMetrics : IDisposable
{
    public const string MeterName = "Proxy";

    private readonly Meter _meter;

    public Meter Meter => _meter;

    public ProxyMetrics(IMeterFactory? factory = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        ConnectionsOpened = _meter.CreateCounter<long>("proxy_tcp_connections_opened", "{connection}", "Downstream connections accepted.");
        ConnectionsActive = _meter.CreateUpDownCounter<long>("proxy_tcp_connections_active", "{connection}", "Downstream connections open now.");
        BytesToUpstream = _meter.CreateCounter<long>("proxy_tcp_bytes_to_upstream", "By", "Bytes forwarded from clients to upstreams.");
        BytesToDownstream = _meter.CreateCounter<long>("proxy_tcp_bytes_to_downstream", "By", "Bytes forwarded from upstreams to clients.");
        ConnectFailures = _meter.CreateCounter<long>("proxy_tcp_connect_failures", "{connection}", "Connections the proxy could not complete, by cause.");
        ConnectionsRejected = _meter.CreateCounter<long>("proxy_tcp_connections_rejected", "{connection}", "Connections closed because a limit was reached.");
        DetectTotal = _meter.CreateCounter<long>("proxy_detect", "{connection}", "Protocol detections on the capture listeners, by detected protocol.");
        ProcessAllocatedBytes = _meter.CreateObservableCounter(
            "proxy_process_allocated_bytes",
            static () => GC.GetTotalAllocatedBytes(precise: false),
            "By",
            "Bytes allocated on the managed heap by the whole process since it started (GC.GetTotalAllocatedBytes, not precise).");
    }

    public Counter<long> ConnectionsOpened { get; }
    public UpDownCounter<long> ConnectionsActive { get; }
    public Counter<long> BytesToUpstream { get; }
    public Counter<long> BytesToDownstream { get; }

    /// <summary>Tag "cause": refused, timeout, unreachable, no_endpoint, no_original_destination, error.</summary>
    public Counter<long> ConnectFailures { get; }

    /// <summary>Tag "limit": max_connections.</summary>
    public Counter<long> ConnectionsRejected { get; }

    /// <summary>Tags "listener" and "protocol": http1, h2, tls, opaque, timeout. Exported as <c>proxy_detect_total</c>.</summary>
    public Counter<long> DetectTotal { get; }

    /// <summary>
    /// Process-wide managed allocation, observed when exported; the e2e bench reads it before and after a load run
    /// to report bytes allocated per forwarded request.
    /// </summary>
    public ObservableCounter<long> ProcessAllocatedBytes { get; }

    public static TagList Tags(string listener, string service) => new() { { "listener", listener }, { "service", service } };

    public void Dispose() => _meter.Dispose();
}

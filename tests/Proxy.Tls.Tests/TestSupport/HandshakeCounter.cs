using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Proxy.Core.Metrics;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>Records <c>proxy_tls_handshakes</c> of one <see cref="ProxyMetrics"/> as "role/result" strings.</summary>
public sealed class HandshakeCounter : IDisposable
{
    private readonly MeterListener _listener = new();

    public HandshakeCounter(ProxyMetrics metrics)
    {
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == metrics.Meter && instrument.Name == "proxy_tls_handshakes")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            string? role = null, result = null;
            foreach (var t in tags)
            {
                if (t.Key == "role")
                {
                    role = t.Value as string;
                }
                else if (t.Key == "result")
                {
                    result = t.Value as string;
                }
            }

            Seen.Enqueue($"{role}/{result}");
        });
        _listener.Start();
    }

    public ConcurrentQueue<string> Seen { get; } = new();

    public void Dispose() => _listener.Dispose();
}

using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Proxy.Core.Metrics;

namespace Proxy.Core.Tests.TestSupport;

/// <summary>Records the measurements of one <see cref="ProxyMetrics"/> instance (other tests' instances are ignored).</summary>
internal sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly HashSet<Instrument> _instruments;
    private readonly ConcurrentQueue<Measurement> _measurements = new();

    public MetricsRecorder(ProxyMetrics metrics)
    {
        _instruments =
        [
            metrics.ConnectionsOpened, metrics.ConnectionsActive, metrics.BytesToUpstream,
            metrics.BytesToDownstream, metrics.ConnectFailures, metrics.ConnectionsRejected, metrics.DetectTotal,
        ];
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (_instruments.Contains(instrument))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var copy = new Dictionary<string, string?>();
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value?.ToString();
            }

            _measurements.Enqueue(new Measurement(instrument.Name, value, copy));
        });
        _listener.Start();
    }

    public long Sum(string instrument, string? tagKey = null, string? tagValue = null)
    {
        long sum = 0;
        foreach (var m in _measurements)
        {
            if (m.Instrument == instrument && (tagKey is null || (m.Tags.TryGetValue(tagKey, out var v) && v == tagValue)))
            {
                sum += m.Value;
            }
        }

        return sum;
    }

    public void Dispose() => _listener.Dispose();

    internal sealed record Measurement(string Instrument, long Value, Dictionary<string, string?> Tags);
}

using System.Diagnostics;
using Proxy.Core.Metrics;

namespace Proxy.Core.Tcp;

/// <summary>Feeds forwarded byte counts into <see cref="ProxyMetrics"/> as they move (so long-lived connections show up live).</summary>
public sealed class MetricsForwardObserver : IForwardObserver
{
    private readonly ProxyMetrics _metrics;
    private readonly TagList _tags;

    public MetricsForwardObserver(ProxyMetrics metrics, in TagList tags)
    {
        _metrics = metrics;
        _tags = tags;
    }

    public void OnBytesToUpstream(int count) => _metrics.BytesToUpstream.Add(count, in _tags);

    public void OnBytesToDownstream(int count) => _metrics.BytesToDownstream.Add(count, in _tags);
}

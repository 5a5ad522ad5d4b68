namespace Proxy.Sidecar.Demo;

/// <summary>Where a demo request ended up, from its response.</summary>
internal enum DemoTarget
{
    /// <summary>Answered by version v1 (<c>x-version: v1</c>).</summary>
    V1,

    /// <summary>Answered by version v2 (<c>x-version: v2</c>).</summary>
    V2,

    /// <summary>Answered by the sidecar itself (<c>x-proxy-error</c>: no route, upstream refused, timeout...).</summary>
    Proxy,

    /// <summary>A response with neither header.</summary>
    Other,

    /// <summary>No response: the connection failed or was reset, or the client timed out.</summary>
    Failed,
}

/// <summary>Latency percentiles in milliseconds; null when there was no request.</summary>
internal readonly record struct LatencyPercentiles(double? P50, double? P90, double? P99)
{
    public static LatencyPercentiles Of(LatencyHistogram h) =>
        new(h.Percentile(50) / 1000, h.Percentile(90) / 1000, h.Percentile(99) / 1000);
}

/// <summary>One target's numbers: totals since the start and the last interval alone.</summary>
internal sealed record TargetStats(
    DemoTarget Target,
    long Requests,
    long Succeeded,
    long IntervalRequests,
    long IntervalSucceeded,
    long HeaderRequests,
    long SplitRequests,
    LatencyPercentiles IntervalLatency,
    LatencyPercentiles TotalLatency)
{
    public string Name => DemoStats.NameOf(Target);

    /// <summary>Share (0..1) of requests answered with 2xx; null when there was none.</summary>
    public double? SuccessRate => Requests == 0 ? null : (double)Succeeded / Requests;

    public double? IntervalSuccessRate => IntervalRequests == 0 ? null : (double)IntervalSucceeded / IntervalRequests;
}

/// <summary>What <see cref="DemoStats.Snapshot"/> returns: every target's numbers at one moment.</summary>
internal sealed record DemoSnapshot(TimeSpan Elapsed, TimeSpan IntervalLength, IReadOnlyList<TargetStats> Targets)
{
    public TargetStats this[DemoTarget target] => Targets[(int)target];

    /// <summary>Requests completed per second since the start.</summary>
    public double RequestsPerSecond => Rate(static t => t.Requests, Elapsed);

    /// <summary>Requests completed per second in the last interval.</summary>
    public double IntervalRequestsPerSecond => Rate(static t => t.IntervalRequests, IntervalLength);

    /// <summary>Requests without the header (so routed by the split) that reached v1 or v2.</summary>
    public long SplitLanded => this[DemoTarget.V1].SplitRequests + this[DemoTarget.V2].SplitRequests;

    /// <summary>Requests with <c>x-version: v2</c> (so routed by the header route), wherever they ended.</summary>
    public long HeaderTotal
    {
        get
        {
            long sum = 0;
            foreach (var t in Targets)
            {
                sum += t.HeaderRequests;
            }

            return sum;
        }
    }

    private double Rate(Func<TargetStats, long> count, TimeSpan over)
    {
        long sum = 0;
        foreach (var t in Targets)
        {
            sum += count(t);
        }

        return over <= TimeSpan.Zero ? 0 : sum / over.TotalSeconds;
    }

    /// <summary>Observed share (0..1) of split-routed requests that reached <paramref name="target"/>; null before any.</summary>
    public double? ObservedSplitShare(DemoTarget target) =>
        SplitLanded == 0 ? null : (double)this[target].SplitRequests / SplitLanded;
}

/// <summary>
/// The client's counters, per <see cref="DemoTarget"/>: requests, successes, whether the request carried the
/// header, and latency histograms for the current interval and the whole run. Thread-safe (one lock; a demo
/// makes at most a few thousand requests a second).
/// </summary>
internal sealed class DemoStats
{
    private static readonly int TargetCount = Enum.GetValues<DemoTarget>().Length;

    private readonly Lock _lock = new();
    private readonly Counters[] _counters;
    private readonly TimeProvider _time;
    private readonly long _started;
    private long _intervalStarted;

    public DemoStats(TimeProvider time)
    {
        _time = time;
        _started = _intervalStarted = time.GetTimestamp();
        _counters = new Counters[TargetCount];
        for (var i = 0; i < _counters.Length; i++)
        {
            _counters[i] = new Counters();
        }
    }

    public static string NameOf(DemoTarget target) => target switch
    {
        DemoTarget.V1 => "v1",
        DemoTarget.V2 => "v2",
        DemoTarget.Proxy => "proxy",
        DemoTarget.Other => "other",
        _ => "failed",
    };

    public void Record(DemoTarget target, bool withHeader, bool succeeded, TimeSpan latency)
    {
        var micros = (long)(latency.Ticks / (double)TimeSpan.TicksPerMicrosecond);
        lock (_lock)
        {
            var c = _counters[(int)target];
            c.IntervalRequests++;
            if (succeeded)
            {
                c.IntervalSucceeded++;
            }

            if (withHeader)
            {
                c.HeaderRequests++;
            }
            else
            {
                c.SplitRequests++;
            }

            c.Interval.Record(micros);
        }
    }

    /// <summary>Ends the current interval: folds it into the totals and returns both views.</summary>
    public DemoSnapshot Snapshot()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var targets = new TargetStats[_counters.Length];
            for (var i = 0; i < _counters.Length; i++)
            {
                var c = _counters[i];
                var interval = LatencyPercentiles.Of(c.Interval);
                c.Total.Add(c.Interval);
                c.Requests += c.IntervalRequests;
                c.Succeeded += c.IntervalSucceeded;
                targets[i] = new TargetStats(
                    (DemoTarget)i, c.Requests, c.Succeeded, c.IntervalRequests, c.IntervalSucceeded, c.HeaderRequests, c.SplitRequests,
                    interval, LatencyPercentiles.Of(c.Total));
                c.Interval.Clear();
                c.IntervalRequests = 0;
                c.IntervalSucceeded = 0;
            }

            var snapshot = new DemoSnapshot(_time.GetElapsedTime(_started, now), _time.GetElapsedTime(_intervalStarted, now), targets);
            _intervalStarted = now;
            return snapshot;
        }
    }

    private sealed class Counters
    {
        public readonly LatencyHistogram Interval = new();
        public readonly LatencyHistogram Total = new();
        public long Requests;
        public long Succeeded;
        public long IntervalRequests;
        public long IntervalSucceeded;
        public long HeaderRequests;
        public long SplitRequests;
    }
}

using System.Numerics;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// A small HDR-like latency histogram over microseconds with fixed log-linear buckets: values below 64 us are
/// counted exactly; above, each power of two is split into 32 buckets, so a reported percentile is within
/// about 3% of the true value. Values above 60 s are counted as 60 s. Recording never allocates.
/// Not thread-safe: <see cref="DemoStats"/> records under its lock.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBucketBits = 5;
    private const int SubBuckets = 1 << SubBucketBits;

    /// <summary>The largest value kept (60 s); larger values land in its bucket.</summary>
    public const long MaxMicroseconds = 60_000_000;

    private static readonly int BucketCount = IndexOf(MaxMicroseconds) + 1;

    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    public void Record(long microseconds)
    {
        _counts[IndexOf(Math.Clamp(microseconds, 0, MaxMicroseconds))]++;
        Count++;
    }

    /// <summary>Adds every count of <paramref name="other"/> to this histogram.</summary>
    public void Add(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
    }

    public void Clear()
    {
        Array.Clear(_counts);
        Count = 0;
    }

    /// <summary>
    /// The value at <paramref name="percentile"/> (0..100) in microseconds: the middle of the bucket holding the
    /// ceil(p% * count)-th smallest value. Null when nothing was recorded.
    /// </summary>
    public double? Percentile(double percentile)
    {
        if (Count == 0)
        {
            return null;
        }

        var rank = Math.Max(1, (long)Math.Ceiling(percentile / 100 * Count));
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, high) = RangeOf(i);
                return (low + high) / 2.0;
            }
        }

        return MaxMicroseconds;
    }

    /// <summary>The bucket of a value: exact below 2 * 32; above, 32 buckets per power of two.</summary>
    internal static int IndexOf(long value)
    {
        if (value < 2 * SubBuckets)
        {
            return (int)value;
        }

        var shift = BitOperations.Log2((ulong)value) - SubBucketBits;
        return (shift * SubBuckets) + (int)(value >> shift);
    }

    /// <summary>The smallest and largest value that fall in bucket <paramref name="index"/>.</summary>
    internal static (long Low, long High) RangeOf(int index)
    {
        if (index < 2 * SubBuckets)
        {
            return (index, index);
        }

        var shift = (index / SubBuckets) - 1;
        long mantissa = index - (shift * SubBuckets);
        return (mantissa << shift, ((mantissa + 1) << shift) - 1);
    }
}

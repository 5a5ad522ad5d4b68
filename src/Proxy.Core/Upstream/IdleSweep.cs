namespace Proxy.Core.Upstream;

/// <summary>The idle-timeout arithmetic the connection pools share.</summary>
public static class IdleSweep
{
    /// <summary>The longest time between two sweeps, whatever the idle timeout.</summary>
    public static readonly TimeSpan MaxPeriod = TimeSpan.FromSeconds(5);

    /// <summary>
    /// <paramref name="idle"/> in <paramref name="time"/>'s own timestamp units (idle ages are compared without
    /// TimeSpan math per rent), <see cref="long.MaxValue"/> for no timeout; and how often to sweep:
    /// min(idle / 2, <see cref="MaxPeriod"/>), at least 1 ms.
    /// </summary>
    public static (long TimeoutStamps, TimeSpan Period) For(TimeSpan idle, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        var stamps = idle == Timeout.InfiniteTimeSpan
            ? long.MaxValue
            : (long)Math.Min(idle.TotalSeconds * time.TimestampFrequency, long.MaxValue / 2);
        var period = idle == Timeout.InfiniteTimeSpan || idle / 2 > MaxPeriod ? MaxPeriod : idle / 2;
        return (stamps, period < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : period);
    }
}

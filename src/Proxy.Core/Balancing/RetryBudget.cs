using Proxy.Core.Configuration;

namespace Proxy.Core.Balancing;

/// <summary>
/// A service's retry budget (Linkerd's): over a sliding window of the last 10 seconds, retries may be at most
/// <see cref="RetryBudgetConfig.Ratio"/> of the requests plus <see cref="RetryBudgetConfig.MinPerSecond"/> per second.
/// Ten one-second slots of request and retry counts; <see cref="OnRequest"/> and <see cref="TryRetry"/> are lock-free
/// except when a slot rolls over to a new second. Thread-safe, allocation-free.
/// </summary>
public sealed class RetryBudget
{
    private const int Slots = 10;
    private readonly double _ratio;
    private readonly int _minPerSecond;
    private readonly TimeProvider _time;
    private readonly long[] _requests = new long[Slots];
    private readonly long[] _retries = new long[Slots];
    private readonly long[] _seconds = new long[Slots];
    private readonly Lock _roll = new();

    public RetryBudget(RetryBudgetConfig config, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        _ratio = config.Ratio;
        _minPerSecond = config.MinPerSecond;
        _time = time ?? TimeProvider.System;
        Array.Fill(_seconds, long.MinValue);
    }

    /// <summary>Counts a request (first tries only) toward the budget.</summary>
    public void OnRequest() => Interlocked.Increment(ref _requests[Slot(Now())]);

    /// <summary>Takes one retry from the budget: false when the window's retries already reach the allowance.</summary>
    public bool TryRetry()
    {
        var now = Now();
        var slot = Slot(now);
        long requests = 0;
        long retries = 0;
        for (var i = 0; i < Slots; i++)
        {
            if (Volatile.Read(ref _seconds[i]) > now - Slots)
            {
                requests += Volatile.Read(ref _requests[i]);
                retries += Volatile.Read(ref _retries[i]);
            }
        }

        var allowed = (_ratio * requests) + ((long)_minPerSecond * Slots);
        if (retries + 1 > allowed)
        {
            return false;
        }

        Interlocked.Increment(ref _retries[slot]);
        return true;
    }

    /// <summary>Whole seconds of the monotonic clock (a wall-clock jump must not empty or refill the window).</summary>
    private long Now() => _time.GetTimestamp() / _time.TimestampFrequency;

    /// <summary>The slot of second <paramref name="now"/>, cleared first when it still holds an older second.</summary>
    private int Slot(long now)
    {
        var slot = (int)(now % Slots);
        if (Volatile.Read(ref _seconds[slot]) != now)
        {
            lock (_roll)
            {
                if (_seconds[slot] != now)
                {
                    Volatile.Write(ref _requests[slot], 0);
                    Volatile.Write(ref _retries[slot], 0);
                    Volatile.Write(ref _seconds[slot], now);
                }
            }
        }

        return slot;
    }
}

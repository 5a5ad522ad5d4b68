namespace Proxy.Core.Balancing;

/// <summary>Tuning and the injected clock and randomness of the balancers.</summary>
public sealed record BalancerOptions
{
    public static readonly TimeSpan DefaultDecay = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan DefaultUnsampledPenalty = TimeSpan.FromSeconds(10);

    public static BalancerOptions Default { get; } = new();

    public TimeProvider Time { get; init; } = TimeProvider.System;

    public IRandomSource Random { get; init; } = SharedRandomSource.Instance;

    /// <summary>Peak-EWMA decay time constant: after this long without samples the estimate is down to 1/e.</summary>
    public TimeSpan Decay { get; init; } = DefaultDecay;

    /// <summary>Peak-EWMA cost of an endpoint that has no latency sample yet but a request in flight.</summary>
    public TimeSpan UnsampledPenalty { get; init; } = DefaultUnsampledPenalty;

    /// <summary>Ring hash: virtual nodes per unit of weight.</summary>
    public int VirtualNodesPerWeight { get; init; } = 100;

    /// <summary>Ring hash: at least this many virtual nodes in all (the nodes per weight double until there are).</summary>
    public int MinRingSize { get; init; } = 1024;

    /// <summary>Ring hash: at most this many virtual nodes in all (fewer per weight when the total weight is large).</summary>
    public int MaxRingSize { get; init; } = 1 << 20;

    /// <summary>Round-robin: longest precomputed schedule; larger total weights are scaled down to fit.</summary>
    public int MaxScheduleLength { get; init; } = 1 << 16;
}

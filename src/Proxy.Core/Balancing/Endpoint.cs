using Proxy.Core.Addresses;

namespace Proxy.Core.Balancing;

/// <summary>
/// One upstream endpoint of a service with its weight and live load: requests in flight and a
/// peak-EWMA latency estimate. The live state is shared by every balancer and snapshot that holds this
/// object, so a new <see cref="EndpointSet"/> built on reload can carry it over.
/// </summary>
/// <remarks>
/// Peak-EWMA (Finagle, Linkerd): each finished request's round-trip time is a sample. A sample above
/// the (decayed) estimate replaces it at once (peak sensitivity: a slowing endpoint is noticed after one
/// request); a lower sample is blended in with weight <c>1 - exp(-elapsed / decay)</c>, and between
/// samples the estimate decays towards zero, so an endpoint that was slow gets traffic again.
/// Cost = estimate * (in-flight + 1). An endpoint without samples costs 0 while idle (new endpoints are
/// tried) and a large penalty while a request is in flight on it (it may be a black hole).
/// </remarks>
public sealed partial class Endpoint
{
    private readonly TimeProvider _time;
    private readonly double _decayTicks;
    private readonly double _penaltyTicks;
    private readonly Lock _sampleLock = new();
    private int _inFlight;

    // Written under _sampleLock, read without it by Pick. A torn pair (new estimate, old stamp) only
    // skews one pick's decay slightly; each field is read atomically (64-bit).
    private double _estimateTicks;
    private long _stamp;
    private bool _sampled;

    public Endpoint(UpstreamAddress address, int weight = 1, TimeProvider? time = null, TimeSpan? decay = null, TimeSpan? unsampledPenalty = null)
    {
        ArgumentNullException.ThrowIfNull(address.EndPoint);
        ArgumentOutOfRangeException.ThrowIfLessThan(weight, 1);
        Address = address;
        Weight = weight;
        _time = time ?? TimeProvider.System;
        var d = decay ?? BalancerOptions.DefaultDecay;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(d, TimeSpan.Zero, nameof(decay));
        _decayTicks = d.TotalSeconds * _time.TimestampFrequency;
        _penaltyTicks = (unsampledPenalty ?? BalancerOptions.DefaultUnsampledPenalty).TotalSeconds * _time.TimestampFrequency;
    }

    public UpstreamAddress Address { get; }

    /// <summary>Relative share of traffic (at least 1).</summary>
    public int Weight { get; }

    /// <summary>Requests (or connections) started and not yet ended.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The latency estimate decayed to now, or null before the first sample.</summary>
    public TimeSpan? LatencyEstimate
    {
        get
        {
            if (!Volatile.Read(ref _sampled))
            {
                return null;
            }

            return TimeSpan.FromSeconds(Decayed(_time.GetTimestamp()) / _time.TimestampFrequency);
        }
    }

    /// <summary>
    /// Marks a request as started on this endpoint. Returns the start timestamp, the token to give to
    /// <see cref="OnRequestEnd"/> exactly once.
    /// </summary>
    public long OnRequestStart()
    {
        Interlocked.Increment(ref _inFlight);
        return _time.GetTimestamp();
    }

    /// <summary>
    /// Marks a request as ended and records its latency. A failure is not blended in (a fast-failing
    /// endpoint must not look fast): it only lets the estimate decay, or raises it, like a slow success.
    /// </summary>
    public void OnRequestEnd(long startToken, bool success)
    {
        Interlocked.Decrement(ref _inFlight);
        var now = _time.GetTimestamp();
        var rtt = Math.Max(0, now - startToken);
        lock (_sampleLock)
        {
            if (!_sampled)
            {
                _estimateTicks = rtt;
                _stamp = now;
                Volatile.Write(ref _sampled, true);
                return;
            }

            // Compare against the estimate decayed to now, as Pick sees it: an endpoint that was slow
            // long ago and answers at a normal speed again is back at once.
            var w = Math.Exp(-Math.Max(0, now - _stamp) / _decayTicks);
            var decayed = _estimateTicks * w;
            _estimateTicks = rtt > decayed ? rtt
                : success ? decayed + (rtt * (1 - w))
                : decayed;
            Volatile.Write(ref _stamp, now);
        }
    }

    /// <summary>
    /// Ends a request started with <see cref="OnRequestStart"/> without a latency sample: for opaque TCP
    /// connections, whose lifetime says nothing about the endpoint's speed.
    /// </summary>
    public void EndWithoutSample() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Peak-EWMA cost at <paramref name="now"/> (a <see cref="TimeProvider"/> timestamp): lower is better.</summary>
    internal double PeakEwmaCost(long now)
    {
        var inFlight = Volatile.Read(ref _inFlight);
        if (!Volatile.Read(ref _sampled))
        {
            return inFlight == 0 ? 0 : _penaltyTicks + inFlight;
        }

        return Decayed(now) * (inFlight + 1);
    }

    private double Decayed(long now)
    {
        var estimate = Volatile.Read(ref _estimateTicks);
        var elapsed = Math.Max(0, now - Volatile.Read(ref _stamp));
        return estimate * Math.Exp(-elapsed / _decayTicks);
    }

    public override string ToString() => Weight == 1 ? Address.ToString() : $"{Address} (weight {Weight})";
}

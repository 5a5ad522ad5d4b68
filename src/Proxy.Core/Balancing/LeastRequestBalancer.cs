namespace Proxy.Core.Balancing;

/// <summary>
/// Power of two choices by load: draws two distinct endpoints (each with probability proportional to
/// weight) and takes the one with fewer requests in flight; a tie goes to the first draw, so an idle
/// service is balanced in proportion to the weights. An unavailable draw (ejected, unhealthy) loses to an available
/// one; when both are out, others are drawn (see <see cref="Availability"/>). O(1), lock-free, and avoids the herd that
/// "globally least loaded" causes when many proxies see the same stale counts.
/// </summary>
public sealed class LeastRequestBalancer(EndpointSet endpoints, BalancerOptions? options = null) : ILoadBalancer
{
    private readonly IRandomSource _random = (options ?? BalancerOptions.Default).Random;

    public EndpointSet Endpoints { get; } = endpoints ?? throw new ArgumentNullException(nameof(endpoints));

    public Endpoint Pick(in BalancerContext context)
    {
        var set = Endpoints;
        if (set.Count == 1)
        {
            return set[0];
        }

        set.SampleTwo(_random, out var a, out var b);
        var first = set[a];
        var second = set[b];
        if (!first.IsAvailable || !second.IsAvailable)
        {
            return OneAvailable(set, _random, first, second);
        }

        return second.InFlight < first.InFlight ? second : first;
    }

    /// <summary>One of the two draws is unavailable (ejected, unhealthy): the other one, or another endpoint, or (panic) the first.</summary>
    internal static Endpoint OneAvailable(EndpointSet set, IRandomSource random, Endpoint first, Endpoint second)
        => first.IsAvailable ? first : second.IsAvailable ? second : Availability.Replace(set, random, first);
}

/// <summary>
/// Power of two choices by peak-EWMA cost (latency estimate times in-flight + 1, see
/// <see cref="Endpoint"/>): latency-aware, Linkerd's default. Candidates are drawn by weight; a tie
/// goes to the first draw.
/// </summary>
public sealed class PeakEwmaBalancer(EndpointSet endpoints, BalancerOptions? options = null) : ILoadBalancer
{
    private readonly IRandomSource _random = (options ?? BalancerOptions.Default).Random;
    private readonly TimeProvider _time = (options ?? BalancerOptions.Default).Time;

    public EndpointSet Endpoints { get; } = endpoints ?? throw new ArgumentNullException(nameof(endpoints));

    public Endpoint Pick(in BalancerContext context)
    {
        var set = Endpoints;
        if (set.Count == 1)
        {
            return set[0];
        }

        set.SampleTwo(_random, out var a, out var b);
        var first = set[a];
        var second = set[b];
        if (!first.IsAvailable || !second.IsAvailable)
        {
            return LeastRequestBalancer.OneAvailable(set, _random, first, second);
        }

        var now = _time.GetTimestamp();
        return second.PeakEwmaCost(now) < first.PeakEwmaCost(now) ? second : first;
    }
}

namespace Proxy.Core.Balancing;

/// <summary>
/// Picks an endpoint at random with probability proportional to its weight; an unavailable pick (ejected, unhealthy)
/// is drawn again (see <see cref="Availability"/>).
/// </summary>
public sealed class RandomBalancer(EndpointSet endpoints, BalancerOptions? options = null) : ILoadBalancer
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

        var e = set[set.SampleWeighted(_random)];
        return e.IsAvailable ? e : Availability.Replace(set, _random, e);
    }
}

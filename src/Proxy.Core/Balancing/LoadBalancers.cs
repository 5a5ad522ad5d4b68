namespace Proxy.Core.Balancing;

/// <summary>Builds balancers by kind, and names the kinds the way the config file spells them.</summary>
public static class LoadBalancers
{
    public static ILoadBalancer Create(BalancerKind kind, EndpointSet endpoints, BalancerOptions? options = null) => kind switch
    {
        BalancerKind.RoundRobin => new RoundRobinBalancer(endpoints, options),
        BalancerKind.Random => new RandomBalancer(endpoints, options),
        BalancerKind.LeastRequest => new LeastRequestBalancer(endpoints, options),
        BalancerKind.PeakEwma => new PeakEwmaBalancer(endpoints, options),
        BalancerKind.RingHash => new RingHashBalancer(endpoints, options),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown balancer kind"),
    };

    /// <summary>Creates fresh endpoints for the addresses and a balancer of the given kind over them.</summary>
    public static ILoadBalancer Create(BalancerKind kind, IReadOnlyList<WeightedAddress> endpoints, BalancerOptions? options = null)
        => Create(kind, EndpointSet.Create(endpoints, options), options);

    /// <summary>The config spellings, in <see cref="BalancerKind"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["round_robin", "random", "least_request", "peak_ewma", "ring_hash"];

    public static string Name(BalancerKind kind) => Names[(int)kind];

    public static bool TryParse(string text, out BalancerKind kind)
    {
        for (var i = 0; i < Names.Count; i++)
        {
            if (Names[i] == text)
            {
                kind = (BalancerKind)i;
                return true;
            }
        }

        kind = default;
        return false;
    }
}

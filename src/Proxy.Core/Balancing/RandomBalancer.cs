namespace Proxy.Core.Balancing;

/// <summary>Picks an endpoint at random with probability proportional to its weight.</summary>
public sealed class RandomBalancer(EndpointSet endpoints, BalancerOptions? options = null) : ILoadBalancer
{
    private readonly IRandomSource _random = (options ?? BalancerOptions.Default).Random;

    public EndpointSet Endpoints { get; } = endpoints ?? throw new ArgumentNullException(nameof(endpoints));

    public Endpoint Pick(in BalancerContext context)
        => Endpoints.Count == 1 ? Endpoints[0] : Endpoints[Endpoints.SampleWeighted(_random)];
}

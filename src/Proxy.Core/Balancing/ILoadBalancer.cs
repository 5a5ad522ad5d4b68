namespace Proxy.Core.Balancing;

/// <summary>
/// Chooses one endpoint of a service for a request (HTTP) or a connection (opaque TCP).
/// Implementations are lock-free, allocate nothing per pick and are safe to share across threads.
/// Load-aware balancers read the live counters the caller keeps on <see cref="Endpoint"/> through
/// <see cref="Endpoint.OnRequestStart"/> and <see cref="Endpoint.OnRequestEnd"/>.
/// </summary>
public interface ILoadBalancer
{
    /// <summary>The immutable endpoint snapshot this balancer picks from.</summary>
    EndpointSet Endpoints { get; }

    Endpoint Pick(in BalancerContext context);
}

/// <summary>The balancing algorithms; the config file spells them in snake_case (see <see cref="LoadBalancers.TryParse"/>).</summary>
public enum BalancerKind
{
    /// <summary>Smooth weighted round-robin (a precomputed interleaved schedule).</summary>
    RoundRobin,

    /// <summary>Weighted random.</summary>
    Random,

    /// <summary>Power of two choices by in-flight requests.</summary>
    LeastRequest,

    /// <summary>Power of two choices by peak-EWMA latency times (in-flight + 1), Linkerd's default.</summary>
    PeakEwma,

    /// <summary>Consistent hashing on a key (source IP at L4), virtual nodes proportional to weight.</summary>
    RingHash,
}

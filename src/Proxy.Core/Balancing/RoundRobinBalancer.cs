using Proxy.Core.Addresses;

namespace Proxy.Core.Balancing;

/// <summary>Picks endpoints in turn. Lock-free; safe to share across connections and threads.</summary>
public sealed class RoundRobinBalancer
{
    private readonly UpstreamAddress[] _endpoints;
    private uint _next;

    public RoundRobinBalancer(IReadOnlyList<UpstreamAddress> endpoints)
    {
        ArgumentOutOfRangeException.ThrowIfZero(endpoints.Count);
        _endpoints = [.. endpoints];
    }

    public IReadOnlyList<UpstreamAddress> Endpoints => _endpoints;

    public UpstreamAddress Pick()
    {
        // Unsigned wrap-around keeps the index valid after 2^32 picks.
        var i = Interlocked.Increment(ref _next) - 1;
        return _endpoints[i % (uint)_endpoints.Length];
    }
}

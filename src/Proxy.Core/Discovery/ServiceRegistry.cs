using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Limits;
using Proxy.Core.Upstream;

namespace Proxy.Core.Discovery;

/// <summary>
/// The known services, looked up by name (explicit listeners) or by virtual address (the original destination of a
/// captured connection). The set of services is fixed per configuration; each service's endpoints may change at runtime
/// through <see cref="UpdateEndpoints"/> (DNS discovery). A reload builds a new registry from the new configuration and
/// the previous registry, so endpoints that stay keep their live state (see the constructor).
/// </summary>
public sealed class ServiceRegistry
{
    private readonly Dictionary<string, Service> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<IPEndPoint, Service> _byAddress = [];
    private volatile Dictionary<UpstreamAddress, CircuitBreaker> _breakers = [];

    /// <param name="services">The services' configuration.</param>
    /// <param name="options">Balancer tuning, clock and randomness.</param>
    /// <param name="upstreams">Gives a service its own connector and pools (TLS origination); null or a null answer: the listener's.</param>
    /// <param name="previous">
    /// The registry this one replaces (config reload), or null. A service of the same name starts from the previous one's
    /// endpoints: an address kept with the same weight keeps its <see cref="Endpoint"/> object (in-flight requests, latency,
    /// health); a service whose <c>dns</c> settings did not change also keeps the endpoints DNS gave it, so it does not
    /// start empty until its next lookup. <see cref="RetiredSince"/> lists the addresses that are gone.
    /// </param>
    public ServiceRegistry(IEnumerable<ServiceConfig> services, BalancerOptions? options = null, Func<ServiceConfig, ServiceUpstreams?>? upstreams = null, ServiceRegistry? previous = null)
    {
        foreach (var config in services)
        {
            if (config.Weights.Count != 0 && config.Weights.Count != config.Endpoints.Count)
            {
                throw new ArgumentException($"service \"{config.Name}\" has {config.Weights.Count} weights for {config.Endpoints.Count} endpoints", nameof(services));
            }

            var endpoints = StaticEndpoints(config);
            var before = previous?.FindByName(config.Name);
            if (before is not null && config.Dns is not null && before.Config?.Dns == config.Dns)
            {
                // What DNS gave the previous service (its endpoints that were not static there) stays until the next lookup.
                var oldStatic = before.Config is { } oldConfig ? StaticEndpoints(oldConfig) : [];
                foreach (var e in before.Endpoints)
                {
                    if (!oldStatic.Exists(s => s.Address == e.Address))
                    {
                        endpoints.Add(new WeightedAddress(e.Address, e.Weight));
                    }
                }
            }

            var service = new Service(config.Name, config.Balancer, [], options, config.HashOn, config.HashKey)
            {
                Config = config,
                UpstreamProtocol = config.UpstreamProtocol,
                Upstreams = upstreams?.Invoke(config),
                Retries = config.Retries,
                RetryBudget = new RetryBudget(config.RetryBudget, options?.Time),
                Breaker = config.CircuitBreakers is { } breakers ? new CircuitBreaker(config.Name, breakers) : null,
                RateLimiter = config.RateLimit is { } rateLimit ? new LocalRateLimiter(rateLimit, options?.Time) : null,
                Health = Health.ServiceHealth.For(config, options?.Time),
            };
            service.Health?.Bind(service);
            service.StartFrom(before, endpoints, config.Dns is null ? null : "no DNS answer yet");
            foreach (var subset in config.Subsets)
            {
                if (config.Dns is null)
                {
                    foreach (var address in subset.Endpoints)
                    {
                        var normalized = Normalize(address);
                        if (!endpoints.Exists(e => e.Address.EndPoint.Equals(normalized)))
                        {
                            throw new ArgumentException($"service \"{config.Name}\" subset \"{subset.Name}\": {address} is not one of the service's endpoints", nameof(services));
                        }
                    }
                }

                service.AddSubset(subset.Name, subset.Endpoints);
            }

            _byName.Add(config.Name, service);
            foreach (var address in config.Addresses)
            {
                _byAddress.Add(Normalize(address), service);
            }
        }

        RebuildBreakers();
    }

    /// <summary>Every service (not the subsets: see <see cref="Service.Subsets"/>).</summary>
    public IEnumerable<Service> Services => _byName.Values;

    /// <summary>
    /// Raised (on the updating thread) for each address that left every service of this registry: pools give it up
    /// (idle connections closed now, busy ones when their exchange ends). Requests in flight to it finish.
    /// </summary>
    public event Action<UpstreamAddress>? EndpointRetired;

    /// <summary>
    /// Replaces <paramref name="service"/>'s endpoints (<see cref="Service.UpdateEndpoints"/>) and retires the addresses
    /// no service of this registry has any more (<see cref="EndpointRetired"/>). Returns the endpoints that left the service.
    /// </summary>
    public IReadOnlyList<Endpoint> UpdateEndpoints(Service service, IReadOnlyList<WeightedAddress> endpoints, string? emptyReason = null)
    {
        ArgumentNullException.ThrowIfNull(service);
        var removed = service.UpdateEndpoints(endpoints, emptyReason);
        RebuildBreakers();
        if (removed.Count > 0 && EndpointRetired is { } retired)
        {
            foreach (var e in removed)
            {
                if (!Contains(e.Address))
                {
                    retired(e.Address);
                }
            }
        }

        return removed;
    }

    /// <summary>True when some service of this registry has an endpoint at <paramref name="address"/> now.</summary>
    public bool Contains(UpstreamAddress address)
    {
        foreach (var s in _byName.Values)
        {
            foreach (var e in s.Endpoints)
            {
                if (e.Address == address)
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// The first service (in no set order) with an endpoint at <paramref name="address"/> now, or null. A scan: for rare
    /// callers (a new HTTP/2 upstream connection asks its keepalive), not the request path.
    /// </summary>
    public Service? FindByEndpoint(UpstreamAddress address)
    {
        foreach (var s in _byName.Values)
        {
            foreach (var e in s.Endpoints)
            {
                if (e.Address == address)
                {
                    return s;
                }
            }
        }

        return null;
    }

    /// <summary>The endpoint addresses <paramref name="previous"/> has and this registry does not (for a reload to retire).</summary>
    public IReadOnlyList<UpstreamAddress> RetiredSince(ServiceRegistry previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        var result = new List<UpstreamAddress>();
        foreach (var s in previous._byName.Values)
        {
            foreach (var e in s.Endpoints)
            {
                if (!Contains(e.Address) && !result.Contains(e.Address))
                {
                    result.Add(e.Address);
                }
            }
        }

        return result;
    }

    /// <summary>A service's configured (static) endpoints with their weights, normalized.</summary>
    public static List<WeightedAddress> StaticEndpoints(ServiceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var endpoints = new List<WeightedAddress>(config.Endpoints.Count);
        for (var i = 0; i < config.Endpoints.Count; i++)
        {
            endpoints.Add(new WeightedAddress(new UpstreamAddress(Normalize(config.Endpoints[i])), config.WeightOf(i)));
        }

        return endpoints;
    }

    public Service? FindByName(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The circuit breaker of the service <paramref name="endpoint"/> belongs to now, or null (no service, or one without limits).</summary>
    public CircuitBreaker? BreakerFor(UpstreamAddress endpoint)
    {
        var breakers = _breakers;
        return breakers.Count == 0 ? null : breakers.GetValueOrDefault(endpoint);
    }

    /// <summary>Every service's circuit breaker (for metrics).</summary>
    public IEnumerable<CircuitBreaker> Breakers => _byName.Values.Select(static s => s.Breaker).OfType<CircuitBreaker>();

    /// <summary>
    /// Which breaker each endpoint address counts against, rebuilt whenever endpoints change (an address shared by two
    /// services counts for the first one's breaker). Swapped whole: readers on the connect path never lock.
    /// </summary>
    private void RebuildBreakers()
    {
        var map = new Dictionary<UpstreamAddress, CircuitBreaker>();
        foreach (var service in _byName.Values)
        {
            if (service.Breaker is { } breaker)
            {
                foreach (var endpoint in service.Endpoints)
                {
                    map.TryAdd(endpoint.Address, breaker);
                }
            }
        }

        _breakers = map;
    }

    /// <summary>The service whose virtual address the client dialled, or null (then the connection passes through).</summary>
    public Service? FindByAddress(OriginalDestination destination)
    {
        var ep = destination.EndPoint;
        if (ep.Address.IsIPv4MappedToIPv6)
        {
            ep = Normalize(ep);
        }

        return _byAddress.GetValueOrDefault(ep);
    }

    /// <summary>IPv4-mapped IPv6 addresses compare as their IPv4 form.</summary>
    public static IPEndPoint Normalize(IPEndPoint ep)
        => ep.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(ep.Address.MapToIPv4(), ep.Port) : ep;
}

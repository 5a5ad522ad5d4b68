using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Limits;
using Proxy.Core.Upstream;

namespace Proxy.Core.Discovery;

/// <summary>
/// A service (or one subset of it) as the data plane sees it: its name and a balancer over its endpoints.
/// A subset's endpoints are the same <see cref="Endpoint"/> objects as the whole service's, so load and
/// latency seen through a subset count for the service too.
/// </summary>
public sealed class Service(string name, ILoadBalancer balancer, HashOn hashOn = HashOn.None, string? hashKey = null)
{
    private Dictionary<string, Service>? _subsets;

    public string Name { get; } = name;

    /// <summary>The subset's name when this is a subset of <see cref="Name"/>, else null.</summary>
    public string? SubsetName { get; private init; }

    public ILoadBalancer Balancer { get; } = balancer;

    /// <summary>What this service's balancer hashes (ring hash only).</summary>
    public HashOn HashOn { get; } = hashOn;

    /// <summary>Header or cookie name hashed when <see cref="HashOn"/> is Header or Cookie (ASCII bytes), else empty.</summary>
    public byte[] HashKey { get; } = hashKey is null ? [] : System.Text.Encoding.ASCII.GetBytes(hashKey);

    /// <summary>The HTTP version requests are sent to the endpoints in (<see cref="ServiceConfig.UpstreamProtocol"/>).</summary>
    public UpstreamProtocol UpstreamProtocol { get; init; }

    /// <summary>The service's own connector and pools (TLS origination), or null: the listener's shared ones.</summary>
    public ServiceUpstreams? Upstreams { get; init; }

    /// <summary>The retry policy of requests whose route has none (<see cref="ServiceConfig.Retries"/>), or null.</summary>
    public RetryPolicyConfig? Retries { get; init; }

    /// <summary>How many retries requests to this service may cause (shared by its subsets).</summary>
    public RetryBudget RetryBudget { get; init; } = new(new RetryBudgetConfig());

    /// <summary>Outlier detection and health check state (shared by the subsets), or null when the service has neither.</summary>
    public Health.ServiceHealth? Health { get; init; }

    /// <summary>The circuit breakers (<see cref="ServiceConfig.CircuitBreakers"/>, shared by its subsets), or null: no limits.</summary>
    public CircuitBreaker? Breaker { get; init; }

    /// <summary>The rate limit of requests whose route has none (<see cref="ServiceConfig.RateLimit"/>, shared by its subsets), or null.</summary>
    public LocalRateLimiter? RateLimiter { get; init; }

    /// <summary>The named subset (e.g. <c>v2</c>), or null when the service has no such subset.</summary>
    public Service? FindSubset(string subset) => _subsets?.GetValueOrDefault(subset);

    /// <summary>The subsets, in no particular order.</summary>
    public IEnumerable<Service> Subsets => _subsets?.Values ?? Enumerable.Empty<Service>();

    internal void AddSubset(string subset, ILoadBalancer balancer)
    {
        _subsets ??= new Dictionary<string, Service>(StringComparer.Ordinal);
        _subsets.Add(subset, new Service(Name, balancer, HashOn, HashKey.Length == 0 ? null : System.Text.Encoding.ASCII.GetString(HashKey)) { SubsetName = subset, UpstreamProtocol = UpstreamProtocol, Upstreams = Upstreams, Retries = Retries, RetryBudget = RetryBudget, Health = Health, Breaker = Breaker, RateLimiter = RateLimiter });
    }

    /// <summary>
    /// Picks an endpoint for a connection from <paramref name="client"/> (its IP is the hash key when the service hashes
    /// on the source IP). An unavailable pick means every endpoint is out (panic mode): counted.
    /// </summary>
    public Endpoint Pick(EndPoint? client)
    {
        var context = HashOn == HashOn.SourceIp && client is IPEndPoint ip ? BalancerContext.WithSourceAddress(ip.Address) : BalancerContext.None;
        var endpoint = Balancer.Pick(in context);
        if (!endpoint.IsAvailable)
        {
            Health?.OnPanicPick();
        }

        return endpoint;
    }
}

/// <summary>
/// An immutable snapshot of the known services, looked up by name (explicit listeners) or by virtual
/// address (the original destination of a captured connection). Built once per configuration.
/// </summary>
public sealed class ServiceRegistry
{
    private readonly Dictionary<string, Service> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<IPEndPoint, Service> _byAddress = [];
    private readonly Dictionary<UpstreamAddress, CircuitBreaker> _breakers = [];

    /// <param name="upstreams">Gives a service its own connector and pools (TLS origination); null or a null answer: the listener's.</param>
    public ServiceRegistry(IEnumerable<ServiceConfig> services, BalancerOptions? options = null, Func<ServiceConfig, ServiceUpstreams?>? upstreams = null)
    {
        foreach (var config in services)
        {
            if (config.Weights.Count != 0 && config.Weights.Count != config.Endpoints.Count)
            {
                throw new ArgumentException($"service \"{config.Name}\" has {config.Weights.Count} weights for {config.Endpoints.Count} endpoints", nameof(services));
            }

            var endpoints = new WeightedAddress[config.Endpoints.Count];
            for (var i = 0; i < endpoints.Length; i++)
            {
                endpoints[i] = new WeightedAddress(new UpstreamAddress(Normalize(config.Endpoints[i])), config.WeightOf(i));
            }

            var set = EndpointSet.Create(endpoints, options);
            var service = new Service(config.Name, LoadBalancers.Create(config.Balancer, set, options), config.HashOn, config.HashKey)
            {
                UpstreamProtocol = config.UpstreamProtocol,
                Upstreams = upstreams?.Invoke(config),
                Retries = config.Retries,
                RetryBudget = new RetryBudget(config.RetryBudget, options?.Time),
                Breaker = config.CircuitBreakers is { } breakers ? new CircuitBreaker(config.Name, breakers) : null,
                RateLimiter = config.RateLimit is { } rateLimit ? new LocalRateLimiter(rateLimit, options?.Time) : null,
                Health = Health.ServiceHealth.For(config, options?.Time),
            };
            service.Health?.Bind(service);
            if (service.Breaker is { } breaker)
            {
                foreach (var endpoint in set.AsSpan())
                {
                    // An endpoint address shared by two services counts for the first one's breaker.
                    _breakers.TryAdd(endpoint.Address, breaker);
                }
            }

            foreach (var subset in config.Subsets)
            {
                var members = new List<Endpoint>(subset.Endpoints.Count);
                foreach (var address in subset.Endpoints)
                {
                    var normalized = Normalize(address);
                    var found = false;
                    foreach (var e in set.AsSpan())
                    {
                        if (e.Address.EndPoint.Equals(normalized))
                        {
                            members.Add(e);
                            found = true;
                            break;
                        }
                    }

                    if (!found)
                    {
                        throw new ArgumentException($"service \"{config.Name}\" subset \"{subset.Name}\": {address} is not one of the service's endpoints", nameof(services));
                    }
                }

                service.AddSubset(subset.Name, LoadBalancers.Create(config.Balancer, new EndpointSet(members), options));
            }

            _byName.Add(config.Name, service);
            foreach (var address in config.Addresses)
            {
                _byAddress.Add(Normalize(address), service);
            }
        }
    }

    public Service? FindByName(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Every service (not their subsets), in no particular order.</summary>
    public IEnumerable<Service> Services => _byName.Values;

    /// <summary>The circuit breaker of the service <paramref name="endpoint"/> belongs to, or null (no service, or one without limits).</summary>
    public CircuitBreaker? BreakerFor(UpstreamAddress endpoint) => _breakers.Count == 0 ? null : _breakers.GetValueOrDefault(endpoint);

    /// <summary>Every service's circuit breaker (for metrics).</summary>
    public IEnumerable<CircuitBreaker> Breakers => _byName.Values.Select(static s => s.Breaker).OfType<CircuitBreaker>();

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

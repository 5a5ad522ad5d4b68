using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;

namespace Proxy.Core.Discovery;

/// <summary>A service as the data plane sees it: its name and a balancer over its endpoints.</summary>
public sealed class Service(string name, ILoadBalancer balancer, HashOn hashOn = HashOn.None)
{
    public string Name { get; } = name;

    public ILoadBalancer Balancer { get; } = balancer;

    /// <summary>What this service's balancer hashes (ring hash only).</summary>
    public HashOn HashOn { get; } = hashOn;

    /// <summary>Picks an endpoint for a connection from <paramref name="client"/> (its IP is the hash key when the service hashes on the source IP).</summary>
    public Endpoint Pick(EndPoint? client)
    {
        if (HashOn == HashOn.SourceIp && client is IPEndPoint ip)
        {
            var context = BalancerContext.WithSourceAddress(ip.Address);
            return Balancer.Pick(in context);
        }

        return Balancer.Pick(BalancerContext.None);
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

    public ServiceRegistry(IEnumerable<ServiceConfig> services, BalancerOptions? options = null)
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

            var service = new Service(config.Name, LoadBalancers.Create(config.Balancer, endpoints, options), config.HashOn);
            _byName.Add(config.Name, service);
            foreach (var address in config.Addresses)
            {
                _byAddress.Add(Normalize(address), service);
            }
        }
    }

    public Service? FindByName(string name) => _byName.GetValueOrDefault(name);

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

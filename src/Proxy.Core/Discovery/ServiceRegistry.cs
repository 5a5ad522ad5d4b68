using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;

namespace Proxy.Core.Discovery;

/// <summary>A service as the data plane sees it: its name and a balancer over its endpoints.</summary>
public sealed class Service(string name, RoundRobinBalancer balancer)
{
    public string Name { get; } = name;

    public RoundRobinBalancer Balancer { get; } = balancer;
}

/// <summary>
/// An immutable snapshot of the known services, looked up by name (explicit listeners) or by virtual
/// address (the original destination of a captured connection). Built once per configuration.
/// </summary>
public sealed class ServiceRegistry
{
    private readonly Dictionary<string, Service> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<IPEndPoint, Service> _byAddress = [];

    public ServiceRegistry(IEnumerable<ServiceConfig> services)
    {
        foreach (var config in services)
        {
            var endpoints = new UpstreamAddress[config.Endpoints.Count];
            for (var i = 0; i < endpoints.Length; i++)
            {
                endpoints[i] = new UpstreamAddress(Normalize(config.Endpoints[i]));
            }

            var service = new Service(config.Name, new RoundRobinBalancer(endpoints));
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

using Proxy.Core.Addresses;
using Proxy.Core.Discovery;
using Proxy.Http.Routing;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Where the requests of one client connection go. Immutable; one instance may serve many connections.
/// Three shapes:
/// <list type="bullet">
/// <item><see cref="ForRoutes"/>: an ordered route table; the first matching route wins, its action picks a
/// destination service (and subset, weighted split) resolved through a lookup; no match answers 404 <c>no_route</c>.</item>
/// <item><see cref="ForService"/>: every request goes to one service (no routes configured).</item>
/// <item><see cref="ForAddress"/>: every request goes to one fixed address (captured traffic to an unknown
/// destination, or inbound traffic to the local app).</item>
/// </list>
/// Any of them may come from an <see cref="IHttp1RoutingSource"/> (<see cref="Follow"/>): then each request asks the
/// source first (config reload).
/// </summary>
public sealed class Http1Routing
{
    /// <summary>Service name used in records for a fixed address without a service.</summary>
    public const string PassthroughService = "passthrough";

    private Http1Routing(RouteTable? routes, Func<string, Service?>? resolve, Service? service, UpstreamAddress? address, string addressService)
    {
        Routes = routes;
        Resolve = resolve;
        Service = service;
        Address = address;
        AddressService = addressService;
    }

    /// <summary>The route table (non-null for <see cref="ForRoutes"/>).</summary>
    public RouteTable? Routes { get; }

    /// <summary>Looks a destination's service up by name (non-null for <see cref="ForRoutes"/>).</summary>
    public Func<string, Service?>? Resolve { get; }

    /// <summary>The single service (non-null for <see cref="ForService"/>).</summary>
    public Service? Service { get; }

    /// <summary>The fixed address (non-null for <see cref="ForAddress"/>).</summary>
    public UpstreamAddress? Address { get; }

    /// <summary>The service name recorded for <see cref="Address"/> traffic.</summary>
    public string AddressService { get; }

    /// <summary>Looked up again before every request (non-null for <see cref="Follow"/>; see <see cref="IHttp1RoutingSource"/>).</summary>
    public IHttp1RoutingSource? Source { get; private init; }

    /// <summary>
    /// The routing <paramref name="source"/> gives at the start of each request (config reload); its security replaces
    /// <see cref="Http1ForwarderOptions.Security"/>. The source must have a routing for the first request.
    /// </summary>
    public static Http1Routing Follow(IHttp1RoutingSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!source.TryGetCurrent(out var first, out _))
        {
            throw new ArgumentException("the routing source has no routing to start with", nameof(source));
        }

        return new Http1Routing(first.Routes, first.Resolve, first.Service, first.Address, first.AddressService) { Source = source };
    }

    /// <summary>Routes first-match-wins; destinations resolved with <paramref name="resolve"/> (e.g. <c>registry.FindByName</c>).</summary>
    public static Http1Routing ForRoutes(RouteTable routes, Func<string, Service?> resolve)
    {
        ArgumentNullException.ThrowIfNull(routes);
        ArgumentNullException.ThrowIfNull(resolve);
        return new Http1Routing(routes, resolve, null, null, PassthroughService);
    }

    /// <summary>All requests to <paramref name="service"/>.</summary>
    public static Http1Routing ForService(Service service)
    {
        ArgumentNullException.ThrowIfNull(service);
        return new Http1Routing(null, null, service, null, PassthroughService);
    }

    /// <summary>All requests to <paramref name="address"/>, recorded as service <paramref name="serviceName"/>.</summary>
    public static Http1Routing ForAddress(UpstreamAddress address, string serviceName = PassthroughService)
    {
        ArgumentNullException.ThrowIfNull(address.EndPoint);
        ArgumentException.ThrowIfNullOrEmpty(serviceName);
        return new Http1Routing(null, null, null, address, serviceName);
    }
}

using Proxy.Http.Authorization;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Config reload (<see cref="IHttp1RoutingSource"/>): a connection whose routing follows a source takes the source's
/// current routing and security at the start of every request, so keep-alive connections and HTTP/2 lanes see a new
/// configuration from their next request on; a request already routed keeps its service, endpoint and pool.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    // Null when the routing is fixed (then the forwarder's options carry the security).
    private readonly IHttp1RoutingSource? _routingSource;

    /// <summary>The security checks of the request about to be routed; refreshes <see cref="_routing"/> from its source first.</summary>
    private HttpSecurity? SecurityForRequest()
    {
        if (_routingSource is not { } source)
        {
            return _options.Security;
        }

        if (source.TryGetCurrent(out var routing, out var security))
        {
            _routing = routing;
        }

        return security;
    }
}

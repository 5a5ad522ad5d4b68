using System.Diagnostics.CodeAnalysis;
using Proxy.Http.Authorization;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Where the routing of a connection is looked up again before every request (config reload): a connection built with
/// <see cref="Http1Routing.Follow"/> asks its source at the start of each request (HTTP/1.1 keep-alive requests and
/// HTTP/2 streams alike), so a new configuration applies to the next request on an open connection, and a request in
/// flight finishes on the snapshot it started with.
/// </summary>
public interface IHttp1RoutingSource
{
    /// <summary>
    /// The routing and the security checks (JWT, policies; null: none) for the next request. False keeps the routing the
    /// connection used last (e.g. its service is gone from the new configuration); the security is set either way.
    /// </summary>
    /// <remarks>Called once per request on the forwarding path: must not allocate or block.</remarks>
    bool TryGetCurrent([NotNullWhen(true)] out Http1Routing? routing, out HttpSecurity? security);
}

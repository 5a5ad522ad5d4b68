using Proxy.Core.Configuration;

namespace Proxy.Http.Authorization;

/// <summary>
/// What one listener's HTTP forwarder checks before routing a request (<see cref="Forwarding.Http1ForwarderOptions.Security"/>):
/// 1. end-user authentication: the matched route's JWT authenticator, else the listener's (none: skipped);
/// 2. authorization: the shared policies (<see cref="Policies"/>, null when the listener does not apply them).
/// </summary>
public sealed class HttpSecurity
{
    private readonly Dictionary<RouteConfig, JwtAuthenticator> _routeJwt;

    /// <param name="policies">The policies (null: not applied on this listener).</param>
    /// <param name="listenerJwt">The listener's JWT authenticator, or null.</param>
    /// <param name="routeJwt">Per-route authenticators, keyed by the route's config object (reference identity).</param>
    public HttpSecurity(AuthorizationState? policies, JwtAuthenticator? listenerJwt = null, IEnumerable<KeyValuePair<RouteConfig, JwtAuthenticator>>? routeJwt = null)
    {
        Policies = policies;
        ListenerJwt = listenerJwt;
        _routeJwt = new Dictionary<RouteConfig, JwtAuthenticator>(ReferenceEqualityComparer.Instance);
        if (routeJwt is not null)
        {
            foreach (var (route, jwt) in routeJwt)
            {
                _routeJwt[route] = jwt;
            }
        }
    }

    public AuthorizationState? Policies { get; }

    public JwtAuthenticator? ListenerJwt { get; }

    /// <summary>True when some route has its own authenticator (the forwarder then matches the route first).</summary>
    public bool HasRouteJwt => _routeJwt.Count != 0;

    /// <summary>True when this listener checks nothing.</summary>
    public bool IsEmpty => Policies is null && ListenerJwt is null && _routeJwt.Count == 0;

    /// <summary>The authenticator for a request matched to <paramref name="route"/> (null: no route matched).</summary>
    public JwtAuthenticator? For(RouteConfig? route) => route is not null && _routeJwt.TryGetValue(route, out var jwt) ? jwt : ListenerJwt;
}

using Proxy.Core.Configuration;
using System.Text;
using Proxy.Http.Http1;

namespace Proxy.Http.Routing;

/// <summary>
/// One route, compiled from its <see cref="RouteConfig"/>: every condition of its match must hold.
/// Regular expressions are compiled here, once per configuration.
/// </summary>
public sealed class Route
{
    private readonly HostMatcher _host;
    private readonly PathMatcher? _path;
    private readonly MethodMatcher _methods;
    private readonly HeaderMatcher[] _headers;
    private readonly QueryMatcher[] _query;
    private readonly Authorization.IdentityPattern[] _sources;

    public Route(RouteConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        var m = config.Match;
        _host = new HostMatcher(m.Hosts);
        _path = m.Path is null ? null : new PathMatcher(m.Path);
        _methods = new MethodMatcher(m.Methods);
        _headers = new HeaderMatcher[m.Headers.Count];
        for (var i = 0; i < _headers.Length; i++)
        {
            _headers[i] = new HeaderMatcher(m.Headers[i]);
        }

        _query = new QueryMatcher[m.Query.Count];
        for (var i = 0; i < _query.Length; i++)
        {
            _query[i] = new QueryMatcher(m.Query[i]);
        }

        _sources = [.. m.SourcePrincipals.Select(static p => new Authorization.IdentityPattern(p))];
        Action = new RouteAction(config.Action, m.Path);
        RateLimiter = config.RateLimit is { } rateLimit ? new Proxy.Core.Limits.LocalRateLimiter(rateLimit) : null;
    }

    public string Name => Config.Name;

    public RouteConfig Config { get; }

    public RouteAction Action { get; }

    /// <summary>The route's local rate limit (<see cref="RouteConfig.RateLimit"/>), or null.</summary>
    public Proxy.Core.Limits.LocalRateLimiter? RateLimiter { get; }

    internal bool Matches(in RequestView request, string? peer)
    {
        // Cheapest checks first; regex (path or header) last.
        if (!_methods.Matches(request.Head) || !_host.Matches(request.Host))
        {
            return false;
        }

        if (_sources.Length != 0 && (peer is null || !Authorization.IdentityPattern.Any(_sources, peer)))
        {
            return false;
        }

        foreach (var q in _query)
        {
            if (!q.Matches(request.Query))
            {
                return false;
            }
        }

        foreach (var h in _headers)
        {
            if (!h.Matches(request.Head.Headers))
            {
                return false;
            }
        }

        return _path is null || _path.Matches(request.Path);
    }
}

/// <summary>
/// The ordered routes of one listener or service; the first route whose match holds wins (like the routes
/// of an Envoy virtual host). Immutable: build a new table on every configuration change and swap it.
/// <para>
/// A/B routing by header is a route with a header matcher placed before the default route, e.g.
/// <c>[{match: {headers: [{name: "x-variant", exact: "b"}]}, action: {service: "web", subset: "v2"}},
///   {action: {service: "web", subset: "v1"}}]</c>. A canary split is one route whose action has weighted
/// destinations (see <see cref="RouteAction.PickDestination"/>).
/// </para>
/// </summary>
public sealed class RouteTable
{
    /// <summary>Reason recorded (logs, metrics) when a request matches no route and the proxy answers 404.</summary>
    public const string NoRouteReason = "no_route";

    private readonly Route[] _routes;

    public RouteTable(IReadOnlyList<RouteConfig> routes)
    {
        ArgumentNullException.ThrowIfNull(routes);
        _routes = new Route[routes.Count];
        for (var i = 0; i < _routes.Length; i++)
        {
            _routes[i] = new Route(routes[i]);
        }
    }

    public static RouteTable Empty { get; } = new([]);

    public ReadOnlySpan<Route> Routes => _routes;

    /// <summary>
    /// Finds the first route matching the request. Allocates nothing (a regex route may rent a char buffer
    /// from the pool for a path or value longer than 256 bytes). On false the caller answers a proxy-made
    /// 404 (body from <see cref="DescribeNoRoute"/>, reason <see cref="NoRouteReason"/>).
    /// </summary>
    public bool TryMatch(Http1RequestHead head, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Route? route)
        => TryMatch(head, null, out route);

    /// <summary>As <see cref="TryMatch(Http1RequestHead, out Route?)"/>, for a caller with the verified identity <paramref name="peer"/> (null: none).</summary>
    public bool TryMatch(Http1RequestHead head, string? peer, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Route? route)
    {
        ArgumentNullException.ThrowIfNull(head);
        var request = new RequestView(head);
        foreach (var r in _routes)
        {
            if (r.Matches(request, peer))
            {
                route = r;
                return true;
            }
        }

        route = null;
        return false;
    }

    /// <summary>
    /// The sentence for a proxy-made 404, e.g. <c>no route matched GET example.com/path on listener inbound</c>.
    /// Allocates (error path only). Non-printable bytes of the request are shown as <c>?</c>, so a client
    /// cannot inject lines into the answer or the log.
    /// </summary>
    public static string DescribeNoRoute(Http1RequestHead head, string listener)
    {
        ArgumentNullException.ThrowIfNull(head);
        var request = new RequestView(head);
        var sb = new StringBuilder("no route matched ");
        AppendPrintable(sb, head.MethodBytes);
        sb.Append(' ');
        AppendPrintable(sb, request.Host);
        AppendPrintable(sb, request.Path);
        return sb.Append(" on listener ").Append(listener).ToString();
    }

    private static void AppendPrintable(StringBuilder sb, ReadOnlySpan<byte> bytes)
    {
        const int Max = 200;
        var n = Math.Min(bytes.Length, Max);
        for (var i = 0; i < n; i++)
        {
            var b = bytes[i];
            sb.Append(b is >= 0x21 and < 0x7F ? (char)b : '?');
        }

        if (bytes.Length > Max)
        {
            sb.Append("...");
        }
    }
}

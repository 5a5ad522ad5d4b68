namespace Proxy.Core.Configuration;

/// <summary>One route as configured: what it matches and where matching requests go. Built once per config.</summary>
public sealed record RouteConfig
{
    /// <summary>Name used in logs and metrics; defaults to <c>routes[i]</c>.</summary>
    public required string Name { get; init; }

    public RouteMatchConfig Match { get; init; } = new();

    public required RouteActionConfig Action { get; init; }

    /// <summary>Config key <c>jwt</c>: end-user JWT authentication for requests this route matches (overrides the listener's).</summary>
    public JwtConfig? Jwt { get; init; }

    /// <summary>Config key <c>retries</c>: the retry policy of requests this route matches (overrides the service's).</summary>
    public RetryPolicyConfig? Retries { get; init; }

    /// <summary>Config key <c>timeouts</c>: request, per-try, idle and connect timeouts of requests this route matches.</summary>
    public RouteTimeoutsConfig? Timeouts { get; init; }

    /// <summary>Config key <c>fault</c>: delays and aborts injected into requests this route matches.</summary>
    public FaultConfig? Fault { get; init; }

    /// <summary>Config key <c>rateLimit</c>: the local rate limit of requests this route matches (overrides the service's).</summary>
    public RateLimitConfig? RateLimit { get; init; }
}

/// <summary>All conditions must hold (an absent condition holds for every request).</summary>
public sealed record RouteMatchConfig
{
    /// <summary>Any of these hosts: exact (case-insensitive, port ignored), <c>*.suffix</c>, or <c>*</c>. Empty = any host.</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>Path condition on the part of the target before <c>?</c>; null = any path.</summary>
    public PathMatchConfig? Path { get; init; }

    /// <summary>Any of these methods (case-sensitive, as on the wire). Empty = any method.</summary>
    public IReadOnlyList<string> Methods { get; init; } = [];

    public IReadOnlyList<HeaderMatchConfig> Headers { get; init; } = [];

    public IReadOnlyList<QueryMatchConfig> Query { get; init; } = [];

    /// <summary>
    /// Any of these caller identities (the connection's verified SPIFFE ID: mesh mTLS or a client certificate): exact,
    /// <c>prefix*</c>, <c>*suffix</c> or <c>*</c> (any verified identity). Empty = any caller, identified or not.
    /// </summary>
    public IReadOnlyList<string> SourcePrincipals { get; init; } = [];
}

public enum PathMatchKind
{
    /// <summary>The whole path equals the value.</summary>
    Exact,
    /// <summary>The path starts with the value.</summary>
    Prefix,
    /// <summary>
    /// The path equals the value or continues with <c>/</c> after it (<c>/api</c> matches <c>/api</c> and
    /// <c>/api/x</c>, not <c>/apix</c>), like Envoy's path_separated_prefix.
    /// </summary>
    SegmentPrefix,
    /// <summary>The whole path matches the regular expression (anchored).</summary>
    Regex,
}

public sealed record PathMatchConfig(PathMatchKind Kind, string Value, bool IgnoreCase = false);

public enum HeaderMatchKind
{
    /// <summary>A field with this name has exactly this value (case-sensitive).</summary>
    Exact,
    /// <summary>A field with this name has a value starting with this value.</summary>
    Prefix,
    /// <summary>A field with this name has a value that wholly matches this regular expression.</summary>
    Regex,
    /// <summary>A field with this name is present (any value).</summary>
    Present,
    /// <summary>No field with this name is present.</summary>
    Absent,
}

/// <summary>Header condition; the name is case-insensitive; with several fields of that name any one may match.</summary>
public sealed record HeaderMatchConfig(string Name, HeaderMatchKind Kind, string Value = "");

public enum QueryMatchKind
{
    /// <summary>A parameter with this name has exactly this raw (not percent-decoded) value.</summary>
    Exact,
    /// <summary>A parameter with this name is present (with or without <c>=</c>).</summary>
    Present,
}

/// <summary>Query parameter condition; names and values compared as raw bytes, case-sensitive; repeated keys: any may match.</summary>
public sealed record QueryMatchConfig(string Name, QueryMatchKind Kind, string Value = "");

/// <summary>
/// Where a matched request goes and which header changes apply; or, with <see cref="Redirect"/> or
/// <see cref="DirectResponse"/>, the answer the proxy gives itself (then <see cref="Destinations"/> is empty).
/// </summary>
public sealed record RouteActionConfig
{
    /// <summary>One destination (weight ignored) or a weighted split over several; empty for a redirect or direct response.</summary>
    public required IReadOnlyList<WeightedDestinationConfig> Destinations { get; init; }

    public HeaderMutationsConfig RequestHeaders { get; init; } = new();

    public HeaderMutationsConfig ResponseHeaders { get; init; } = new();

    /// <summary>Config key <c>rewrite</c>: the path and host the request goes upstream with, or null to forward them unchanged.</summary>
    public RouteRewriteConfig? Rewrite { get; init; }

    /// <summary>Config key <c>redirect</c>: answer with a redirect instead of forwarding.</summary>
    public RouteRedirectConfig? Redirect { get; init; }

    /// <summary>Config key <c>directResponse</c>: answer with this status and body instead of forwarding.</summary>
    public DirectResponseConfig? DirectResponse { get; init; }
}

/// <summary>
/// A new path for the request upstream (the query is kept): <see cref="Path"/> replaces the whole path,
/// <see cref="PathPrefix"/> only the part the route's path match matched (exact, prefix or segmentPrefix);
/// <see cref="Host"/> replaces Host (HTTP/2: :authority). At least one is set; Path and PathPrefix not both.
/// </summary>
public sealed record RouteRewriteConfig
{
    public string? Path { get; init; }

    public string? PathPrefix { get; init; }

    public string? Host { get; init; }
}

/// <summary>
/// A redirect the proxy answers itself: <c>Location</c> is the request's URL with the configured parts replaced
/// (scheme, host, port, the whole path or the matched prefix of it, the query dropped when <see cref="StripQuery"/>).
/// </summary>
public sealed record RouteRedirectConfig
{
    /// <summary><c>http</c> or <c>https</c>; null keeps the request's (https when the client connection is TLS).</summary>
    public string? Scheme { get; init; }

    /// <summary>Host name without port; null keeps the request's.</summary>
    public string? Host { get; init; }

    /// <summary>1-65535; null keeps the request's port, or with <see cref="Scheme"/> set uses that scheme's default (Gateway API).</summary>
    public int? Port { get; init; }

    public string? Path { get; init; }

    public string? PathPrefix { get; init; }

    /// <summary>301, 302 (the default), 303, 307 or 308.</summary>
    public int Status { get; init; } = 302;

    public bool StripQuery { get; init; }
}

/// <summary>A response the proxy answers itself: status 200-599 and a body (text/plain unless responseHeaders set content-type).</summary>
public sealed record DirectResponseConfig(int Status, string Body);

/// <summary>A service, optionally one subset of it, with its positive weight in a split.</summary>
public sealed record WeightedDestinationConfig(string Service, string? Subset = null, int Weight = 1);

/// <summary>Header changes: remove these names, then replace (set) or append (add) these fields.</summary>
public sealed record HeaderMutationsConfig
{
    public IReadOnlyList<KeyValuePair<string, string>> Set { get; init; } = [];

    public IReadOnlyList<KeyValuePair<string, string>> Add { get; init; } = [];

    public IReadOnlyList<string> Remove { get; init; } = [];
}

/// <summary>How route regular expressions are compiled, shared by validation (here) and matching (Proxy.Http.Routing).</summary>
public static class RouteRegex
{
    /// <summary>Anchored, non-backtracking (linear time whatever the input: no ReDoS from a crafted path).</summary>
    public static System.Text.RegularExpressions.Regex Create(string pattern, bool ignoreCase) =>
        new($"^(?:{pattern})$", System.Text.RegularExpressions.RegexOptions.NonBacktracking | System.Text.RegularExpressions.RegexOptions.CultureInvariant | (ignoreCase ? System.Text.RegularExpressions.RegexOptions.IgnoreCase : System.Text.RegularExpressions.RegexOptions.None));
}

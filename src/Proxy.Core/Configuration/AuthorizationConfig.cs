namespace Proxy.Core.Configuration;

// Authorization policies (file section "authorization") and end-user JWT authentication (listener / route key "jwt").
// Read and validated by AuthorizationConfigReader; compiled and evaluated by Proxy.Http.Authorization.

/// <summary>
/// The policies applied on the inbound capture listener and on explicit listeners with <c>"authorization": true</c>.
/// Evaluation order: any matching deny policy denies; else, when an allow policy exists (or <see cref="DefaultDeny"/>),
/// the request must match an allow policy; else it is allowed.
/// </summary>
public sealed record AuthorizationConfig
{
    /// <summary>Deny what no allow policy matches even when there is no allow policy at all.</summary>
    public bool DefaultDeny { get; init; }

    public IReadOnlyList<PolicyConfig> Policies { get; init; } = [];

    /// <summary>True when evaluation can only ever allow (no policy, no default deny): listeners skip it.</summary>
    public bool IsEmpty => !DefaultDeny && Policies.Count == 0;
}

public enum PolicyAction
{
    Allow,
    Deny,
}

/// <summary>A named policy: it matches a request when any of its rules does.</summary>
public sealed record PolicyConfig(string Name, PolicyAction Action, IReadOnlyList<PolicyRuleConfig> Rules);

/// <summary>
/// One rule: it matches when every condition given holds (an absent condition holds for everything; a rule with no
/// condition matches every request and connection). A list condition holds when any of its entries matches.
/// </summary>
public sealed record PolicyRuleConfig
{
    /// <summary>Peer identities (SPIFFE IDs): exact, <c>prefix*</c>, <c>*suffix</c> or <c>*</c> (any authenticated peer).</summary>
    public IReadOnlyList<string> Principals { get; init; } = [];

    /// <summary>Peer identities that must not match (same patterns); an unauthenticated peer matches none of them.</summary>
    public IReadOnlyList<string> NotPrincipals { get; init; } = [];

    /// <summary>Trust domains of the peer identity (<c>spiffe://&lt;td&gt;/...</c>), exact.</summary>
    public IReadOnlyList<string> TrustDomains { get; init; } = [];

    /// <summary>Namespaces of the peer identity (<c>spiffe://td/ns/&lt;ns&gt;/sa/sa</c>), exact.</summary>
    public IReadOnlyList<string> Namespaces { get; init; } = [];

    /// <summary>true: the peer has a verified identity (mTLS); false: it has none; null: either.</summary>
    public bool? Authenticated { get; init; }

    /// <summary>Destination ports (the port the client dialled).</summary>
    public IReadOnlyList<int> Ports { get; init; } = [];

    /// <summary>HTTP methods (case-sensitive, as on the wire).</summary>
    public IReadOnlyList<string> Methods { get; init; } = [];

    /// <summary>Paths (before <c>?</c>): exact, or prefix when the pattern ends in <c>*</c> (<c>/api/*</c>).</summary>
    public IReadOnlyList<PathMatchConfig> Paths { get; init; } = [];

    /// <summary>Header conditions (Exact, Prefix or Present); all must hold.</summary>
    public IReadOnlyList<HeaderMatchConfig> Headers { get; init; } = [];

    /// <summary>JWT principals <c>iss/sub</c>: exact, <c>prefix*</c>, <c>*suffix</c> or <c>*</c> (any valid token).</summary>
    public IReadOnlyList<string> RequestPrincipals { get; init; } = [];

    /// <summary>JWT claims: for each, the token's claim (a string or an array of strings) holds one of the values.</summary>
    public IReadOnlyList<ClaimMatchConfig> Claims { get; init; } = [];

    /// <summary>Conditions that exist only for HTTP requests (an opaque TCP connection has none of them).</summary>
    public bool HasHttpConditions => Methods.Count != 0 || Paths.Count != 0 || Headers.Count != 0 || RequestPrincipals.Count != 0 || Claims.Count != 0;
}

/// <summary>A JWT claim condition: the claim named <see cref="Name"/> holds one of <see cref="Values"/>.</summary>
public sealed record ClaimMatchConfig(string Name, IReadOnlyList<string> Values);

/// <summary>
/// End-user authentication with JWT bearer tokens, per listener or per route (a route's wins). Validated: signature
/// (keys from <see cref="Jwks"/>), issuer, audience, lifetime (30 s clock skew).
/// </summary>
public sealed record JwtConfig
{
    /// <summary>The required <c>iss</c>.</summary>
    public required string Issuer { get; init; }

    /// <summary>Accepted <c>aud</c> values; empty: the audience is not checked.</summary>
    public IReadOnlyList<string> Audiences { get; init; } = [];

    /// <summary>A JWKS: a file path, an <c>https://</c> URL, or <c>http://</c> on a loopback address (tests, local issuers).</summary>
    public required string Jwks { get; init; }

    /// <summary>How often the JWKS is re-read (file or URL).</summary>
    public TimeSpan JwksRefresh { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Header the validated token's <c>sub</c> is forwarded in (any incoming copy is removed first); null: none.</summary>
    public string? ForwardSubjectHeader { get; init; }

    /// <summary>A request without a token is refused (401) when true; passed on without claims when false. An invalid token is always refused.</summary>
    public bool Required { get; init; } = true;

    /// <summary>The header carrying the token, as <c>Bearer &lt;token&gt;</c>.</summary>
    public string FromHeader { get; init; } = "authorization";
}

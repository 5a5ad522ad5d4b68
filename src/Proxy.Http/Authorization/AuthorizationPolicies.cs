using System.Text;
using Proxy.Core.Configuration;
using Proxy.Core.Identity;
using Proxy.Http.Http1;
using Proxy.Http.Routing;

namespace Proxy.Http.Authorization;

/// <summary>
/// The outcome of evaluating the policies for one request or connection. <see cref="Policy"/> is the metric label and
/// access log value: the matching policy's name, <see cref="AuthorizationPolicies.NoAllowMatched"/> or
/// <see cref="AuthorizationPolicies.NoPolicy"/> (bounded: names come from the config).
/// </summary>
public readonly record struct AuthorizationDecision(bool Allowed, string Policy)
{
    /// <summary>The sentence of a proxy-made 403 (error path: allocates).</summary>
    public string Describe(string listener) => Policy == AuthorizationPolicies.NoAllowMatched
        ? $"listener {listener} refused the request: no allow policy matched"
        : $"listener {listener} refused the request: denied by policy {Policy}";
}

/// <summary>
/// An immutable, compiled set of authorization policies (one per configuration; swapped whole on reload through
/// <see cref="AuthorizationState"/>). Evaluation order:
/// <list type="number">
/// <item>any matching <c>deny</c> policy denies (the first in config order names the decision);</item>
/// <item>else, when there is an <c>allow</c> policy (or <c>defaultDeny</c>), the request must match one: the first
///       matching allow policy names the decision, none matching denies (<see cref="NoAllowMatched"/>);</item>
/// <item>else the request is allowed (<see cref="NoPolicy"/>).</item>
/// </list>
/// A policy matches when any of its rules does; a rule when all its conditions hold. Opaque TCP connections are
/// evaluated with the conditions that exist at L4 (identity, port): a rule with an HTTP-only condition (methods,
/// paths, headers, requestPrincipals, claims) never matches at L4, so an allow rule with one never admits a TCP
/// connection (Istio's behaviour) and a deny rule with one is ignored there (<see cref="Warnings"/> says so at load).
/// Evaluation allocates nothing: matchers are compiled to bytes; identities are compared as spans.
/// </summary>
public sealed class AuthorizationPolicies
{
    /// <summary>Decision label when allow policies exist (or defaultDeny) and none matched.</summary>
    public const string NoAllowMatched = "no_allow_match";

    /// <summary>Decision label when no policy applies and nothing is denied by default.</summary>
    public const string NoPolicy = "none";

    private readonly CompiledPolicy[] _deny;
    private readonly CompiledPolicy[] _allow;
    private readonly bool _defaultDeny;

    public AuthorizationPolicies(AuthorizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        _defaultDeny = config.DefaultDeny;
        var deny = new List<CompiledPolicy>();
        var allow = new List<CompiledPolicy>();
        var warnings = new List<string>();
        foreach (var p in config.Policies)
        {
            (p.Action == PolicyAction.Deny ? deny : allow).Add(new CompiledPolicy(p));
            for (var i = 0; i < p.Rules.Count; i++)
            {
                if (p.Action == PolicyAction.Deny && p.Rules[i].HasHttpConditions)
                {
                    warnings.Add($"deny policy {p.Name} rule {i} has HTTP conditions (methods, paths, headers, requestPrincipals or claims): it is ignored for opaque TCP connections");
                }
            }
        }

        _deny = [.. deny];
        _allow = [.. allow];
        Warnings = warnings;
    }

    public static AuthorizationPolicies Empty { get; } = new(new AuthorizationConfig());

    public AuthorizationConfig Config { get; }

    /// <summary>True when every request is allowed (no policy, no default deny): callers skip evaluation.</summary>
    public bool IsEmpty => _deny.Length == 0 && _allow.Length == 0 && !_defaultDeny;

    /// <summary>Things worth a warning in the log when these policies are loaded.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>Evaluates an HTTP request.</summary>
    /// <param name="peer">The connection's verified peer (null: plaintext, no identity).</param>
    /// <param name="port">The destination port the client dialled.</param>
    /// <param name="head">The parsed request head.</param>
    /// <param name="jwt">The request's validated end-user token, or null.</param>
    public AuthorizationDecision EvaluateHttp(IPeerIdentityFeature? peer, int port, Http1RequestHead head, JwtPrincipal? jwt)
    {
        ArgumentNullException.ThrowIfNull(head);
        var request = new AuthorizationRequest(peer?.PeerIdentity, port, head, jwt);
        return Evaluate(in request);
    }

    /// <summary>Evaluates an opaque TCP connection (L4: identity and port only).</summary>
    public AuthorizationDecision EvaluateConnection(IPeerIdentityFeature? peer, int port)
    {
        var request = new AuthorizationRequest(peer?.PeerIdentity, port, null, null);
        return Evaluate(in request);
    }

    private AuthorizationDecision Evaluate(in AuthorizationRequest request)
    {
        foreach (var p in _deny)
        {
            if (p.Matches(in request))
            {
                return new AuthorizationDecision(false, p.Name);
            }
        }

        if (_allow.Length == 0 && !_defaultDeny)
        {
            return new AuthorizationDecision(true, NoPolicy);
        }

        foreach (var p in _allow)
        {
            if (p.Matches(in request))
            {
                return new AuthorizationDecision(true, p.Name);
            }
        }

        return new AuthorizationDecision(false, NoAllowMatched);
    }

    /// <summary>What a rule looks at. <see cref="Head"/> is null for an opaque TCP connection.</summary>
    internal readonly ref struct AuthorizationRequest
    {
        public AuthorizationRequest(string? identity, int port, Http1RequestHead? head, JwtPrincipal? jwt)
        {
            Identity = identity;
            Port = port;
            Head = head;
            Jwt = jwt;
            Path = head is null ? default : new RequestView(head).Path;
        }

        public string? Identity { get; }

        public int Port { get; }

        public Http1RequestHead? Head { get; }

        public JwtPrincipal? Jwt { get; }

        public ReadOnlySpan<byte> Path { get; }
    }

    private sealed class CompiledPolicy(PolicyConfig config)
    {
        private readonly CompiledRule[] _rules = [.. config.Rules.Select(static r => new CompiledRule(r))];

        public string Name { get; } = config.Name;

        public bool Matches(in AuthorizationRequest request)
        {
            foreach (var r in _rules)
            {
                if (r.Matches(in request))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class CompiledRule
    {
        private readonly IdentityPattern[] _principals;
        private readonly IdentityPattern[] _notPrincipals;
        private readonly string[] _trustDomains;
        private readonly string[] _namespaces;
        private readonly bool? _authenticated;
        private readonly int[] _ports;
        private readonly bool _http;
        private readonly MethodMatcher? _methods;
        private readonly PathMatcher[] _paths;
        private readonly HeaderMatcher[] _headers;
        private readonly IdentityPattern[] _requestPrincipals;
        private readonly ClaimMatchConfig[] _claims;

        public CompiledRule(PolicyRuleConfig r)
        {
            _principals = [.. r.Principals.Select(static p => new IdentityPattern(p))];
            _notPrincipals = [.. r.NotPrincipals.Select(static p => new IdentityPattern(p))];
            _trustDomains = [.. r.TrustDomains];
            _namespaces = [.. r.Namespaces];
            _authenticated = r.Authenticated;
            _ports = [.. r.Ports];
            _http = r.HasHttpConditions;
            _methods = r.Methods.Count == 0 ? null : new MethodMatcher(r.Methods);
            _paths = [.. r.Paths.Select(static p => new PathMatcher(p))];
            _headers = [.. r.Headers.Select(static h => new HeaderMatcher(h))];
            _requestPrincipals = [.. r.RequestPrincipals.Select(static p => new IdentityPattern(p))];
            _claims = [.. r.Claims];
        }

        public bool Matches(in AuthorizationRequest request)
        {
            var id = request.Identity;
            if (_authenticated is { } authenticated && (id is not null) != authenticated)
            {
                return false;
            }

            if (_principals.Length != 0 && (id is null || !IdentityPattern.Any(_principals, id)))
            {
                return false;
            }

            if (_notPrincipals.Length != 0 && id is not null && IdentityPattern.Any(_notPrincipals, id))
            {
                return false;
            }

            if (_trustDomains.Length != 0 && (id is null || !Contains(_trustDomains, Spiffe.TrustDomain(id))))
            {
                return false;
            }

            if (_namespaces.Length != 0 && (id is null || !Contains(_namespaces, Spiffe.Namespace(id))))
            {
                return false;
            }

            if (_ports.Length != 0 && Array.IndexOf(_ports, request.Port) < 0)
            {
                return false;
            }

            if (!_http)
            {
                return true;
            }

            // HTTP-only conditions: never hold for an opaque connection.
            if (request.Head is not { } head)
            {
                return false;
            }

            if (_methods is not null && !_methods.Matches(head))
            {
                return false;
            }

            if (_paths.Length != 0 && !AnyPath(request.Path))
            {
                return false;
            }

            foreach (var h in _headers)
            {
                if (!h.Matches(head.Headers))
                {
                    return false;
                }
            }

            if (_requestPrincipals.Length != 0 && (request.Jwt is not { } jwt || !IdentityPattern.Any(_requestPrincipals, jwt.Principal)))
            {
                return false;
            }

            foreach (var c in _claims)
            {
                if (request.Jwt is not { } token || !token.HasClaimValue(c.Name, c.Values))
                {
                    return false;
                }
            }

            return true;
        }

        private bool AnyPath(ReadOnlySpan<byte> path)
        {
            foreach (var p in _paths)
            {
                if (p.Matches(path))
                {
                    return true;
                }
            }

            return false;
        }

        private static bool Contains(string[] values, ReadOnlySpan<char> value)
        {
            if (value.IsEmpty)
            {
                return false;
            }

            foreach (var v in values)
            {
                if (value.SequenceEqual(v))
                {
                    return true;
                }
            }

            return false;
        }
    }
}

/// <summary>An identity pattern: exact, <c>prefix*</c>, <c>*suffix</c>, or <c>*</c> (anything present).</summary>
internal sealed class IdentityPattern
{
    private readonly string _value;
    private readonly byte _kind; // 0 exact, 1 prefix, 2 suffix, 3 any

    public IdentityPattern(string pattern)
    {
        if (pattern == "*")
        {
            _kind = 3;
            _value = "";
        }
        else if (pattern.EndsWith('*'))
        {
            _kind = 1;
            _value = pattern[..^1];
        }
        else if (pattern.StartsWith('*'))
        {
            _kind = 2;
            _value = pattern[1..];
        }
        else
        {
            _value = pattern;
        }
    }

    public bool Matches(string identity) => _kind switch
    {
        0 => string.Equals(identity, _value, StringComparison.Ordinal),
        1 => identity.StartsWith(_value, StringComparison.Ordinal),
        2 => identity.EndsWith(_value, StringComparison.Ordinal),
        _ => true,
    };

    public static bool Any(IdentityPattern[] patterns, string identity)
    {
        foreach (var p in patterns)
        {
            if (p.Matches(identity))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>Parts of a SPIFFE ID <c>spiffe://&lt;trust-domain&gt;/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>, as spans (no allocation).</summary>
public static class Spiffe
{
    private const string Scheme = "spiffe://";

    /// <summary>The trust domain, or empty when <paramref name="id"/> is not a SPIFFE ID.</summary>
    public static ReadOnlySpan<char> TrustDomain(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        if (!id.StartsWith(Scheme, StringComparison.Ordinal))
        {
            return default;
        }

        var rest = id.AsSpan(Scheme.Length);
        var slash = rest.IndexOf('/');
        return slash < 0 ? rest : rest[..slash];
    }

    /// <summary>The namespace (the segment after <c>/ns/</c> right after the trust domain), or empty.</summary>
    public static ReadOnlySpan<char> Namespace(string id)
    {
        var td = TrustDomain(id);
        if (td.IsEmpty)
        {
            return default;
        }

        var path = id.AsSpan(Scheme.Length + td.Length);
        if (!path.StartsWith("/ns/"))
        {
            return default;
        }

        path = path[4..];
        var slash = path.IndexOf('/');
        return slash < 0 ? path : path[..slash];
    }
}

/// <summary>A validated end-user token: its principal (<c>iss/sub</c>), subject and claims (array claims as several values).</summary>
public sealed class JwtPrincipal
{
    private readonly Dictionary<string, string[]> _claims;

    public JwtPrincipal(string issuer, string subject, IReadOnlyDictionary<string, string[]> claims, DateTime validTo)
    {
        ArgumentNullException.ThrowIfNull(claims);
        Issuer = issuer;
        Subject = subject;
        Principal = $"{issuer}/{subject}";
        SubjectBytes = Encoding.UTF8.GetBytes(subject);
        _claims = new Dictionary<string, string[]>(claims, StringComparer.Ordinal);
        ValidTo = validTo;
    }

    public string Issuer { get; }

    public string Subject { get; }

    /// <summary><c>iss/sub</c>, what <c>requestPrincipals</c> match.</summary>
    public string Principal { get; }

    internal byte[] SubjectBytes { get; }

    /// <summary>Expiry (UTC; <see cref="DateTime.MinValue"/> when the token has none).</summary>
    public DateTime ValidTo { get; }

    public bool TryGetClaim(string name, out string[] values) => _claims.TryGetValue(name, out values!);

    /// <summary>True when the claim <paramref name="name"/> has one of <paramref name="allowed"/> among its values.</summary>
    public bool HasClaimValue(string name, IReadOnlyList<string> allowed)
    {
        ArgumentNullException.ThrowIfNull(allowed);
        if (!_claims.TryGetValue(name, out var values))
        {
            return false;
        }

        foreach (var v in values)
        {
            for (var i = 0; i < allowed.Count; i++)
            {
                if (string.Equals(v, allowed[i], StringComparison.Ordinal))
                {
                    return true;
                }
            }
        }

        return false;
    }
}

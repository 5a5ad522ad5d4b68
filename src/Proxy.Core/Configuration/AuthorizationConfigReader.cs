using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads the <c>authorization</c> section and <c>jwt</c> objects. Unknown keys are errors; every error names its key
/// (<c>authorization.policies[1].rules[0].paths[2]: ...</c>). Shape:
/// <code>
/// "authorization": {
///   "defaultDeny": false,
///   "policies": [ { "name": "admins-only", "action": "allow" | "deny",
///                   "rules": [ { "principals": ["spiffe://cluster.local/ns/web/sa/*"], "notPrincipals": [...],
///                                "trustDomains": ["cluster.local"], "namespaces": ["web"], "authenticated": true,
///                                "ports": [8080], "methods": ["GET"], "paths": ["/admin", "/api/*"],
///                                "headers": [ { "name": "x-env", "exact" | "prefix": "prod" } | { "name": "x-a", "present": true } ],
///                                "requestPrincipals": ["https://issuer/alice"], "claims": { "role": ["admin"] } } ] } ] }
/// "jwt": { "issuer": "https://issuer", "audiences": ["api"], "jwks": "keys.json" | "https://issuer/jwks",
///          "jwksRefresh": "5m", "forwardSubjectHeader": "x-user-id", "required": true, "fromHeader": "authorization" }
/// </code>
/// </summary>
public static class AuthorizationConfigReader
{
    public static AuthorizationConfig? Read(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (!CheckKeys(e, key, errors, "defaultDeny", "policies"))
        {
            return null;
        }

        var before = errors.Count;
        var defaultDeny = false;
        if (e.TryGetProperty("defaultDeny", out var dd))
        {
            if (dd.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                defaultDeny = dd.GetBoolean();
            }
            else
            {
                errors.Add($"{key}.defaultDeny: must be true or false");
            }
        }

        var policies = new List<PolicyConfig>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (e.TryGetProperty("policies", out var p))
        {
            ReadArray(p, $"{key}.policies", errors, (item, itemKey) =>
            {
                if (ReadPolicy(item, itemKey, errors) is { } policy)
                {
                    if (!names.Add(policy.Name))
                    {
                        errors.Add($"{itemKey}.name: duplicate policy name \"{policy.Name}\"");
                    }

                    policies.Add(policy);
                }
            });
        }

        return errors.Count == before ? new AuthorizationConfig { DefaultDeny = defaultDeny, Policies = policies } : null;
    }

    private static PolicyConfig? ReadPolicy(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "action", "rules"))
        {
            return null;
        }

        var before = errors.Count;
        var name = ReadString(e, "name", key, errors);
        var action = PolicyAction.Allow;
        switch (ReadString(e, "action", key, errors))
        {
            case null:
                break;
            case "allow":
                break;
            case "deny":
                action = PolicyAction.Deny;
                break;
            case var other:
                errors.Add($"{key}.action: \"{other}\" is not one of allow, deny");
                break;
        }

        var rules = new List<PolicyRuleConfig>();
        if (!e.TryGetProperty("rules", out var r))
        {
            errors.Add($"{key}.rules: missing (a list of rules; [{{}}] matches everything)");
        }
        else
        {
            ReadArray(r, $"{key}.rules", errors, (item, itemKey) =>
            {
                if (ReadRule(item, itemKey, errors) is { } rule)
                {
                    rules.Add(rule);
                }
            });
            if (r.ValueKind == JsonValueKind.Array && r.GetArrayLength() == 0)
            {
                errors.Add($"{key}.rules: must list at least one rule ([{{}}] matches everything)");
            }
        }

        return errors.Count == before ? new PolicyConfig(name!, action, rules) : null;
    }

    private static PolicyRuleConfig? ReadRule(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "principals", "notPrincipals", "trustDomains", "namespaces", "authenticated", "ports",
                "methods", "paths", "headers", "requestPrincipals", "claims"))
        {
            return null;
        }

        var before = errors.Count;
        bool? authenticated = null;
        if (e.TryGetProperty("authenticated", out var a))
        {
            if (a.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                authenticated = a.GetBoolean();
            }
            else
            {
                errors.Add($"{key}.authenticated: must be true or false");
            }
        }

        var ports = new List<int>();
        if (e.TryGetProperty("ports", out var ps))
        {
            ReadArray(ps, $"{key}.ports", errors, (item, itemKey) =>
            {
                if (item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out var port) && port is > 0 and <= 65535)
                {
                    ports.Add(port);
                }
                else
                {
                    errors.Add($"{itemKey}: must be a port number from 1 to 65535, not {item.GetRawText()}");
                }
            });
        }

        var paths = new List<PathMatchConfig>();
        foreach (var path in Strings(e, "paths", key, errors))
        {
            if (path[0] != '/' && path != "*")
            {
                errors.Add($"{key}.paths: \"{path}\" must start with / (or be *)");
            }
            else if (path.IndexOf('*', StringComparison.Ordinal) is var star && star >= 0 && star != path.Length - 1)
            {
                errors.Add($"{key}.paths: \"{path}\" may only have * at its end (a prefix)");
            }
            else
            {
                paths.Add(path[^1] == '*' ? new PathMatchConfig(PathMatchKind.Prefix, path[..^1]) : new PathMatchConfig(PathMatchKind.Exact, path));
            }
        }

        var headers = new List<HeaderMatchConfig>();
        if (e.TryGetProperty("headers", out var hs))
        {
            ReadArray(hs, $"{key}.headers", errors, (item, itemKey) =>
            {
                if (ReadHeader(item, itemKey, errors) is { } h)
                {
                    headers.Add(h);
                }
            });
        }

        var claims = new List<ClaimMatchConfig>();
        if (e.TryGetProperty("claims", out var cs))
        {
            if (cs.ValueKind != JsonValueKind.Object)
            {
                errors.Add($"{key}.claims: must be an object {{ \"role\": [\"admin\"], ... }}");
            }
            else
            {
                foreach (var c in cs.EnumerateObject())
                {
                    var values = Strings(cs, c.Name, $"{key}.claims", errors);
                    if (c.Name.Length == 0)
                    {
                        errors.Add($"{key}.claims: a claim name may not be empty");
                    }
                    else if (c.Value.ValueKind == JsonValueKind.Array && values.Count == 0)
                    {
                        errors.Add($"{key}.claims.{c.Name}: must list at least one value");
                    }
                    else
                    {
                        claims.Add(new ClaimMatchConfig(c.Name, values));
                    }
                }
            }
        }

        var rule = new PolicyRuleConfig
        {
            Principals = Patterns(e, "principals", key, errors),
            NotPrincipals = Patterns(e, "notPrincipals", key, errors),
            TrustDomains = Strings(e, "trustDomains", key, errors),
            Namespaces = Strings(e, "namespaces", key, errors),
            Authenticated = authenticated,
            Ports = ports,
            Methods = Strings(e, "methods", key, errors),
            Paths = paths,
            Headers = headers,
            RequestPrincipals = Patterns(e, "requestPrincipals", key, errors),
            Claims = claims,
        };
        return errors.Count == before ? rule : null;
    }

    private static HeaderMatchConfig? ReadHeader(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "exact", "prefix", "present"))
        {
            return null;
        }

        var name = ReadString(e, "name", key, errors);
        var kinds = (e.TryGetProperty("exact", out var exact) ? 1 : 0) + (e.TryGetProperty("prefix", out var prefix) ? 1 : 0) + (e.TryGetProperty("present", out var present) ? 1 : 0);
        if (kinds != 1)
        {
            errors.Add($"{key}: needs exactly one of exact, prefix, present");
            return null;
        }

        if (name is null)
        {
            return null;
        }

        if (exact.ValueKind != JsonValueKind.Undefined)
        {
            return ReadStringValue(exact, $"{key}.exact", errors, allowEmpty: true) is { } v ? new HeaderMatchConfig(name, HeaderMatchKind.Exact, v) : null;
        }

        if (prefix.ValueKind != JsonValueKind.Undefined)
        {
            return ReadStringValue(prefix, $"{key}.prefix", errors) is { } v ? new HeaderMatchConfig(name, HeaderMatchKind.Prefix, v) : null;
        }

        if (present.ValueKind != JsonValueKind.True)
        {
            errors.Add($"{key}.present: must be true (to require absence, use a deny policy)");
            return null;
        }

        return new HeaderMatchConfig(name, HeaderMatchKind.Present);
    }

    /// <summary>Identity patterns: at most one <c>*</c>, at the start or the end (or <c>*</c> alone).</summary>
    private static List<string> Patterns(JsonElement e, string name, string key, List<string> errors)
    {
        var list = Strings(e, name, key, errors);
        foreach (var p in list)
        {
            var star = p.IndexOf('*', StringComparison.Ordinal);
            if (star >= 0 && (p.LastIndexOf('*') != star || (star != 0 && star != p.Length - 1)))
            {
                errors.Add($"{key}.{name}: \"{p}\" may have one * only, at its start (suffix match) or end (prefix match)");
            }
        }

        return list;
    }

    /// <summary>An optional array of non-empty strings; empty when absent.</summary>
    private static List<string> Strings(JsonElement e, string name, string key, List<string> errors)
    {
        var list = new List<string>();
        if (e.TryGetProperty(name, out var array))
        {
            ReadArray(array, $"{key}.{name}", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is { } s)
                {
                    list.Add(s);
                }
            });
        }

        return list;
    }

    public static JwtConfig? ReadJwt(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (!CheckKeys(e, key, errors, "issuer", "audiences", "jwks", "jwksRefresh", "forwardSubjectHeader", "required", "fromHeader"))
        {
            return null;
        }

        var before = errors.Count;
        var issuer = ReadString(e, "issuer", key, errors);
        var jwks = ReadString(e, "jwks", key, errors);
        if (jwks is not null && jwks.Contains("://", StringComparison.Ordinal) && !IsAllowedJwksUrl(jwks))
        {
            errors.Add($"{key}.jwks: \"{jwks}\" must be a file path, an https:// URL, or http:// on a loopback address");
        }

        var refresh = TimeSpan.FromMinutes(5);
        if (e.TryGetProperty("jwksRefresh", out var r))
        {
            var text = ReadStringValue(r, $"{key}.jwksRefresh", errors);
            if (text is not null)
            {
                if (ValueParsers.ParseDuration(text, allowOff: false, out var d) is { } error)
                {
                    errors.Add($"{key}.jwksRefresh: {error}");
                }
                else if (d < TimeSpan.FromSeconds(1))
                {
                    errors.Add($"{key}.jwksRefresh: must be at least 1s");
                }
                else
                {
                    refresh = d;
                }
            }
        }

        var required = true;
        if (e.TryGetProperty("required", out var req))
        {
            if (req.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                required = req.GetBoolean();
            }
            else
            {
                errors.Add($"{key}.required: must be true or false");
            }
        }

        var forward = ReadString(e, "forwardSubjectHeader", key, errors, required: false);
        var from = ReadString(e, "fromHeader", key, errors, required: false) ?? "authorization";
        foreach (var (name, value) in new[] { ("forwardSubjectHeader", forward), ("fromHeader", from) })
        {
            if (value is not null && !IsToken(value))
            {
                errors.Add($"{key}.{name}: \"{value}\" is not a header name");
            }
        }

        var audiences = Strings(e, "audiences", key, errors);
        return errors.Count == before
            ? new JwtConfig
            {
                Issuer = issuer!,
                Audiences = audiences,
                Jwks = jwks!,
                JwksRefresh = refresh,
                ForwardSubjectHeader = forward?.ToLowerInvariant(),
                Required = required,
                FromHeader = from.ToLowerInvariant(),
            }
            : null;
    }

    /// <summary>https anywhere; http only to a loopback address (a local issuer, tests).</summary>
    public static bool IsAllowedJwksUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            return false;
        }

        return uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback);
    }

    private static bool IsToken(string name)
    {
        foreach (var c in name)
        {
            if (c <= ' ' || c >= 127 || c is ':' or '(' or ')' or ',' or '/' or ';' or '<' or '=' or '>' or '?' or '@' or '[' or '\\' or ']' or '{' or '}' or '"')
            {
                return false;
            }
        }

        return name.Length != 0;
    }
}

using System.Text.Json;

namespace Proxy.Core.Configuration;

/// <summary>Writes the authorization section and jwt objects in the shape <see cref="AuthorizationConfigReader"/> reads. No reflection (NativeAOT).</summary>
public static class AuthorizationConfigJson
{
    public static void Write(AuthorizationConfig config, Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject();
        w.WriteBoolean("defaultDeny", config.DefaultDeny);
        w.WriteStartArray("policies");
        foreach (var p in config.Policies)
        {
            w.WriteStartObject();
            w.WriteString("name", p.Name);
            w.WriteString("action", p.Action == PolicyAction.Deny ? "deny" : "allow");
            w.WriteStartArray("rules");
            foreach (var r in p.Rules)
            {
                WriteRule(r, w);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteRule(PolicyRuleConfig r, Utf8JsonWriter w)
    {
        w.WriteStartObject();
        Strings(w, "principals", r.Principals);
        Strings(w, "notPrincipals", r.NotPrincipals);
        Strings(w, "trustDomains", r.TrustDomains);
        Strings(w, "namespaces", r.Namespaces);
        if (r.Authenticated is { } authenticated)
        {
            w.WriteBoolean("authenticated", authenticated);
        }

        if (r.Ports.Count != 0)
        {
            w.WriteStartArray("ports");
            foreach (var port in r.Ports)
            {
                w.WriteNumberValue(port);
            }

            w.WriteEndArray();
        }

        Strings(w, "methods", r.Methods);
        if (r.Paths.Count != 0)
        {
            w.WriteStartArray("paths");
            foreach (var p in r.Paths)
            {
                w.WriteStringValue(p.Kind == PathMatchKind.Prefix ? p.Value + "*" : p.Value);
            }

            w.WriteEndArray();
        }

        RouteConfigJson.WriteHeaderMatches(w, r.Headers);
        Strings(w, "requestPrincipals", r.RequestPrincipals);
        if (r.Claims.Count != 0)
        {
            w.WriteStartObject("claims");
            foreach (var c in r.Claims)
            {
                Strings(w, c.Name, c.Values);
            }

            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    public static void WriteJwt(JwtConfig jwt, Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(jwt);
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject();
        w.WriteString("issuer", jwt.Issuer);
        Strings(w, "audiences", jwt.Audiences);
        w.WriteString("jwks", jwt.Jwks);
        w.WriteString("jwksRefresh", ValueParsers.FormatDuration(jwt.JwksRefresh));
        if (jwt.ForwardSubjectHeader is not null)
        {
            w.WriteString("forwardSubjectHeader", jwt.ForwardSubjectHeader);
        }

        w.WriteBoolean("required", jwt.Required);
        w.WriteString("fromHeader", jwt.FromHeader);
        w.WriteEndObject();
    }

    private static void Strings(Utf8JsonWriter w, string name, IReadOnlyList<string> values)
    {
        if (values.Count == 0)
        {
            return;
        }

        w.WriteStartArray(name);
        foreach (var v in values)
        {
            w.WriteStringValue(v);
        }

        w.WriteEndArray();
    }
}

using System.Text.Json;

namespace Proxy.Core.Configuration;

/// <summary>Writes routes in the shape <see cref="RouteConfigReader"/> reads, so /config output loads back. No reflection (NativeAOT).</summary>
public static class RouteConfigJson
{
    public static void Write(IReadOnlyList<RouteConfig> routes, Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(routes);
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartArray();
        foreach (var r in routes)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Name);
            WriteMatch(r.Match, w);
            WriteAction(r.Action, w);
            if (r.Jwt is not null)
            {
                w.WritePropertyName("jwt");
                AuthorizationConfigJson.WriteJwt(r.Jwt, w);
            }

            if (r.Retries is not null)
            {
                RetryConfigReader.WritePolicy(w, r.Retries);
            }

            if (r.Timeouts is not null)
            {
                TimeoutsConfigReader.Write(w, r.Timeouts);
            }

            if (r.Fault is not null)
            {
                FaultConfigReader.Write(w, r.Fault);
            }

            if (r.RateLimit is not null)
            {
                LimitsConfigReader.WriteRateLimit(w, r.RateLimit);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void WriteMatch(RouteMatchConfig m, Utf8JsonWriter w)
    {
        w.WriteStartObject("match");
        if (m.Hosts.Count != 0)
        {
            w.WriteStartArray("hosts");
            foreach (var h in m.Hosts)
            {
                w.WriteStringValue(h);
            }

            w.WriteEndArray();
        }

        if (m.Path is { } p)
        {
            w.WriteStartObject("path");
            w.WriteString(p.Kind switch
            {
                PathMatchKind.Exact => "exact",
                PathMatchKind.Prefix => "prefix",
                PathMatchKind.SegmentPrefix => "segmentPrefix",
                _ => "regex",
            }, p.Value);
            if (p.IgnoreCase)
            {
                w.WriteBoolean("ignoreCase", true);
            }

            w.WriteEndObject();
        }

        if (m.Methods.Count != 0)
        {
            w.WriteStartArray("methods");
            foreach (var method in m.Methods)
            {
                w.WriteStringValue(method);
            }

            w.WriteEndArray();
        }

        WriteHeaderMatches(w, m.Headers);
        if (m.Query.Count != 0)
        {
            w.WriteStartArray("query");
            foreach (var q in m.Query)
            {
                w.WriteStartObject();
                w.WriteString("name", q.Name);
                if (q.Kind == QueryMatchKind.Present)
                {
                    w.WriteBoolean("present", true);
                }
                else
                {
                    w.WriteString("exact", q.Value);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (m.SourcePrincipals.Count != 0)
        {
            w.WriteStartArray("sourcePrincipals");
            foreach (var source in m.SourcePrincipals)
            {
                w.WriteStringValue(source);
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    private static void WriteAction(RouteActionConfig a, Utf8JsonWriter w)
    {
        w.WriteStartObject("action");
        if (a.Redirect is { } redirect)
        {
            WriteRedirect(redirect, w);
        }
        else if (a.DirectResponse is { } direct)
        {
            w.WriteStartObject("directResponse");
            w.WriteNumber("status", direct.Status);
            w.WriteString("body", direct.Body);
            w.WriteEndObject();
        }
        else if (a.Destinations.Count == 1)
        {
            w.WriteString("service", a.Destinations[0].Service);
            if (a.Destinations[0].Subset is { } subset)
            {
                w.WriteString("subset", subset);
            }
        }
        else
        {
            w.WriteStartArray("split");
            foreach (var d in a.Destinations)
            {
                w.WriteStartObject();
                w.WriteString("service", d.Service);
                if (d.Subset is { } subset)
                {
                    w.WriteString("subset", subset);
                }

                w.WriteNumber("weight", d.Weight);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (a.Rewrite is { } rewrite)
        {
            w.WriteStartObject("rewrite");
            WriteIfSet("path", rewrite.Path, w);
            WriteIfSet("pathPrefix", rewrite.PathPrefix, w);
            WriteIfSet("host", rewrite.Host, w);
            w.WriteEndObject();
        }

        WriteMutations("requestHeaders", a.RequestHeaders, w);
        WriteMutations("responseHeaders", a.ResponseHeaders, w);
        w.WriteEndObject();
    }

    private static void WriteRedirect(RouteRedirectConfig r, Utf8JsonWriter w)
    {
        w.WriteStartObject("redirect");
        WriteIfSet("scheme", r.Scheme, w);
        WriteIfSet("host", r.Host, w);
        if (r.Port is { } port)
        {
            w.WriteNumber("port", port);
        }

        WriteIfSet("path", r.Path, w);
        WriteIfSet("pathPrefix", r.PathPrefix, w);
        w.WriteNumber("status", r.Status);
        if (r.StripQuery)
        {
            w.WriteBoolean("stripQuery", true);
        }

        w.WriteEndObject();
    }

    private static void WriteIfSet(string name, string? value, Utf8JsonWriter w)
    {
        if (value is not null)
        {
            w.WriteString(name, value);
        }
    }

    private static void WriteMutations(string name, HeaderMutationsConfig m, Utf8JsonWriter w)
    {
        if (m.Set.Count == 0 && m.Add.Count == 0 && m.Remove.Count == 0)
        {
            return;
        }

        w.WriteStartObject(name);
        WriteFields("set", m.Set, w);
        WriteFields("add", m.Add, w);
        if (m.Remove.Count != 0)
        {
            w.WriteStartArray("remove");
            foreach (var r in m.Remove)
            {
                w.WriteStringValue(r);
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    private static void WriteFields(string name, IReadOnlyList<KeyValuePair<string, string>> fields, Utf8JsonWriter w)
    {
        if (fields.Count == 0)
        {
            return;
        }

        w.WriteStartArray(name);
        foreach (var (key, value) in fields)
        {
            w.WriteStartObject();
            w.WriteString("name", key);
            w.WriteString("value", value);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>A match's <c>headers</c> array (routes and authorization rules share the shape); nothing when empty.</summary>
    internal static void WriteHeaderMatches(Utf8JsonWriter w, IReadOnlyList<HeaderMatchConfig> headers)
    {
        if (headers.Count == 0)
        {
            return;
        }

        w.WriteStartArray("headers");
        foreach (var h in headers)
        {
            w.WriteStartObject();
            w.WriteString("name", h.Name);
            switch (h.Kind)
            {
                case HeaderMatchKind.Present:
                    w.WriteBoolean("present", true);
                    break;
                case HeaderMatchKind.Absent:
                    w.WriteBoolean("absent", true);
                    break;
                default:
                    w.WriteString(h.Kind switch { HeaderMatchKind.Exact => "exact", HeaderMatchKind.Prefix => "prefix", _ => "regex" }, h.Value);
                    break;
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }
}

using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>The outcome of reading routes: the routes, or every error found (never just the first).</summary>
public sealed record RouteConfigResult(IReadOnlyList<RouteConfig>? Routes, IReadOnlyList<string> Errors)
{
    public bool Ok => Routes is not null;
}

/// <summary>
/// Reads and validates a route list from JSON. Unknown keys are errors; every error names its key, e.g.
/// <c>routes[2].match.path.regex: not a valid regular expression (...)</c>. Shape:
/// <code>
/// [ { "name": "canary",                                         (optional, default routes[i])
///     "match": { "hosts": ["api.example.com", "*.example.com", "*"],
///                "path": { "exact" | "prefix" | "segmentPrefix" | "regex": "/v1", "ignoreCase": false },
///                "methods": ["GET", "POST"],
///                "headers": [ { "name": "x-user", "exact" | "prefix" | "regex": "..." }
///                           | { "name": "x-debug", "present": true } | { "name": "x-debug", "absent": true } ],
///                "query": [ { "name": "a", "exact": "1" } | { "name": "b", "present": true } ],
///                "sourcePrincipals": ["spiffe://cluster.local/ns/web/*"] },
///     "action": { "service": "web", "subset": "v1" }
///             | { "split": [ { "service": "web", "subset": "v1", "weight": 90 },
///                            { "service": "web", "subset": "v2", "weight": 10 } ] },
///               plus optional "requestHeaders" / "responseHeaders":
///               { "set": [ { "name": "x", "value": "y" } ], "add": [ ... ], "remove": [ "x-internal" ] }
///               and "rewrite": { "path": "/new" | "pathPrefix": "/v2", "host": "web.internal" }
///             | { "redirect": { "scheme": "https", "host": "h", "port": 8443, "path" | "pathPrefix": "/x",
///                               "status": 301, "stripQuery": true } }              (all optional; status 302)
///             | { "directResponse": { "status": 503, "body": "down for maintenance" } },
///               these two with optional "responseHeaders" } ]
/// </code>
/// Header changes may not touch message framing or connection fields (Content-Length, Transfer-Encoding,
/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade).
/// </summary>
public static class RouteConfigReader
{
    private static readonly JsonDocumentOptions JsonOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    private static readonly string[] FramingHeaders =
        ["content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

    /// <summary>Reads routes from JSON text whose top level is the route array.</summary>
    public static RouteConfigResult ReadJson(string json, string key = "routes")
    {
        try
        {
            using var doc = JsonDocument.Parse(json, JsonOptions);
            return Read(doc.RootElement, key);
        }
        catch (JsonException e)
        {
            return new RouteConfigResult(null, [$"{key}: not valid JSON ({e.Message})"]);
        }
    }

    /// <summary>Reads routes from a JSON array element; <paramref name="key"/> prefixes every error.</summary>
    public static RouteConfigResult Read(JsonElement routes, string key = "routes")
    {
        var errors = new List<string>();
        var result = new List<RouteConfig>();
        if (routes.ValueKind != JsonValueKind.Array)
        {
            errors.Add($"{key}: must be an array");
            return new RouteConfigResult(null, errors);
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var i = 0;
        foreach (var item in routes.EnumerateArray())
        {
            var itemKey = $"{key}[{i++}]";
            if (ReadRoute(item, itemKey, errors) is { } route)
            {
                if (!names.Add(route.Name))
                {
                    errors.Add($"{itemKey}.name: duplicate route name '{route.Name}'");
                }

                result.Add(route);
            }
        }

        return errors.Count == 0 ? new RouteConfigResult(result, errors) : new RouteConfigResult(null, errors);
    }

    private static RouteConfig? ReadRoute(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "match", "action", "jwt", "retries", "timeouts", "fault", "rateLimit"))
        {
            return null;
        }

        var before = errors.Count;
        var name = e.TryGetProperty("name", out _) ? ReadString(e, "name", key, errors) : key;
        var match = e.TryGetProperty("match", out var m) ? ReadMatch(m, $"{key}.match", errors) : new RouteMatchConfig();
        RouteActionConfig? action = null;
        if (!e.TryGetProperty("action", out var a))
        {
            errors.Add($"{key}.action: missing");
        }
        else
        {
            action = ReadAction(a, $"{key}.action", errors);
        }

        var jwt = e.TryGetProperty("jwt", out var j) ? AuthorizationConfigReader.ReadJwt(j, $"{key}.jwt", errors) : null;
        var retries = e.TryGetProperty("retries", out var rt) ? RetryConfigReader.ReadPolicy(rt, $"{key}.retries", errors) : null;
        var timeouts = e.TryGetProperty("timeouts", out var to) ? TimeoutsConfigReader.Read(to, $"{key}.timeouts", errors) : null;
        var fault = e.TryGetProperty("fault", out var fa) ? FaultConfigReader.Read(fa, $"{key}.fault", errors) : null;
        var rateLimit = e.TryGetProperty("rateLimit", out var rl) ? LimitsConfigReader.ReadRateLimit(rl, $"{key}.rateLimit", errors) : null;

        if (action is not null && match is not null)
        {
            CheckActionFitsRoute(e, key, match, action, errors);
        }

        return errors.Count == before && name is not null && match is not null && action is not null
            ? new RouteConfig { Name = name, Match = match, Action = action, Jwt = jwt, Retries = retries, Timeouts = timeouts, Fault = fault, RateLimit = rateLimit }
            : null;
    }

    private static RouteMatchConfig? ReadMatch(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "hosts", "path", "methods", "headers", "query", "sourcePrincipals"))
        {
            return null;
        }

        var hosts = new List<string>();
        if (e.TryGetProperty("hosts", out var h))
        {
            ReadArray(h, $"{key}.hosts", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is { } host && ValidateHost(host, itemKey, errors))
                {
                    hosts.Add(host);
                }
            });
        }

        PathMatchConfig? path = null;
        if (e.TryGetProperty("path", out var p))
        {
            path = ReadPath(p, $"{key}.path", errors);
        }

        var methods = new List<string>();
        if (e.TryGetProperty("methods", out var ms))
        {
            ReadArray(ms, $"{key}.methods", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is { } method)
                {
                    if (!IsToken(method))
                    {
                        errors.Add($"{itemKey}: '{method}' is not a valid method token");
                    }
                    else
                    {
                        methods.Add(method);
                    }
                }
            });
        }

        var headers = new List<HeaderMatchConfig>();
        if (e.TryGetProperty("headers", out var hs))
        {
            ReadArray(hs, $"{key}.headers", errors, (item, itemKey) =>
            {
                if (ReadHeaderMatch(item, itemKey, errors) is { } hm)
                {
                    headers.Add(hm);
                }
            });
        }

        var query = new List<QueryMatchConfig>();
        if (e.TryGetProperty("query", out var qs))
        {
            ReadArray(qs, $"{key}.query", errors, (item, itemKey) =>
            {
                if (ReadQueryMatch(item, itemKey, errors) is { } qm)
                {
                    query.Add(qm);
                }
            });
        }

        var sources = new List<string>();
        if (e.TryGetProperty("sourcePrincipals", out var ss))
        {
            ReadArray(ss, $"{key}.sourcePrincipals", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is not { } pattern)
                {
                    return;
                }

                var star = pattern.IndexOf('*', StringComparison.Ordinal);
                if (star >= 0 && (pattern.LastIndexOf('*') != star || (star != 0 && star != pattern.Length - 1)))
                {
                    errors.Add($"{itemKey}: \"{pattern}\" may have one * only, at its start (suffix match) or end (prefix match)");
                }
                else
                {
                    sources.Add(pattern);
                }
            });
        }

        return new RouteMatchConfig { Hosts = hosts, Path = path, Methods = methods, Headers = headers, Query = query, SourcePrincipals = sources };
    }

    private static PathMatchConfig? ReadPath(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "exact", "prefix", "segmentPrefix", "regex", "ignoreCase"))
        {
            return null;
        }

        var ignoreCase = false;
        if (e.TryGetProperty("ignoreCase", out var ic))
        {
            if (ic.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                errors.Add($"{key}.ignoreCase: must be true or false");
                return null;
            }

            ignoreCase = ic.GetBoolean();
        }

        if (OneOf(e, key, errors, "exact", "prefix", "segmentPrefix", "regex") is not { } kindName)
        {
            return null;
        }

        var value = ReadStringValue(e.GetProperty(kindName), $"{key}.{kindName}", errors);
        if (value is null)
        {
            return null;
        }

        var kind = kindName switch
        {
            "exact" => PathMatchKind.Exact,
            "prefix" => PathMatchKind.Prefix,
            "segmentPrefix" => PathMatchKind.SegmentPrefix,
            _ => PathMatchKind.Regex,
        };
        if (kind == PathMatchKind.Regex)
        {
            return ValidateRegex(value, ignoreCase, $"{key}.regex", errors) ? new PathMatchConfig(kind, value, ignoreCase) : null;
        }

        if (value[0] != '/' || !IsAsciiVisible(value))
        {
            errors.Add($"{key}.{kindName}: must start with '/' and contain only visible ASCII characters");
            return null;
        }

        return new PathMatchConfig(kind, value, ignoreCase);
    }

    private static HeaderMatchConfig? ReadHeaderMatch(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "exact", "prefix", "regex", "present", "absent"))
        {
            return null;
        }

        var name = ReadString(e, "name", key, errors);
        if (name is not null && !IsToken(name))
        {
            errors.Add($"{key}.name: '{name}' is not a valid header name");
            name = null;
        }

        if (OneOf(e, key, errors, "exact", "prefix", "regex", "present", "absent") is not { } kindName || name is null)
        {
            return null;
        }

        var valueKey = $"{key}.{kindName}";
        var v = e.GetProperty(kindName);
        switch (kindName)
        {
            case "present":
            case "absent":
                if (v.ValueKind != JsonValueKind.True)
                {
                    errors.Add($"{valueKey}: must be true");
                    return null;
                }

                return new HeaderMatchConfig(name, kindName == "present" ? HeaderMatchKind.Present : HeaderMatchKind.Absent);
            case "regex":
                var pattern = ReadStringValue(v, valueKey, errors);
                return pattern is not null && ValidateRegex(pattern, false, valueKey, errors) ? new HeaderMatchConfig(name, HeaderMatchKind.Regex, pattern) : null;
            default:
                var value = ReadStringValue(v, valueKey, errors, allowEmpty: kindName == "exact");
                if (value is not null && !IsFieldValue(value))
                {
                    errors.Add($"{valueKey}: contains characters not allowed in a header value");
                    return null;
                }

                return value is null ? null : new HeaderMatchConfig(name, kindName == "exact" ? HeaderMatchKind.Exact : HeaderMatchKind.Prefix, value);
        }
    }

    private static QueryMatchConfig? ReadQueryMatch(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "exact", "present"))
        {
            return null;
        }

        var name = ReadString(e, "name", key, errors);
        if (name is not null && (!IsAsciiVisible(name) || name.AsSpan().IndexOfAny("&=#") >= 0))
        {
            errors.Add($"{key}.name: must be visible ASCII without '&', '=' or '#'");
            name = null;
        }

        if (OneOf(e, key, errors, "exact", "present") is not { } kindName || name is null)
        {
            return null;
        }

        var v = e.GetProperty(kindName);
        if (kindName == "present")
        {
            if (v.ValueKind != JsonValueKind.True)
            {
                errors.Add($"{key}.present: must be true");
                return null;
            }

            return new QueryMatchConfig(name, QueryMatchKind.Present);
        }

        var value = ReadStringValue(v, $"{key}.exact", errors, allowEmpty: true);
        if (value is not null && value.Length > 0 && (!IsAsciiVisible(value) || value.AsSpan().IndexOfAny("&#") >= 0))
        {
            errors.Add($"{key}.exact: must be visible ASCII without '&' or '#' (raw, as sent)");
            return null;
        }

        return value is null ? null : new QueryMatchConfig(name, QueryMatchKind.Exact, value);
    }

    private static RouteActionConfig? ReadAction(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "service", "subset", "split", "requestHeaders", "responseHeaders", "rewrite", "redirect", "directResponse"))
        {
            return null;
        }

        var before = errors.Count;
        var destinations = new List<WeightedDestinationConfig>();
        var hasService = e.TryGetProperty("service", out _);
        var hasSplit = e.TryGetProperty("split", out var split);
        RouteRedirectConfig? redirect = null;
        DirectResponseConfig? direct = null;
        RouteRewriteConfig? rewrite = null;
        var local = e.TryGetProperty("redirect", out var rd) | e.TryGetProperty("directResponse", out var dr);
        if (local)
        {
            if (OneOf(e, key, errors, "service", "split", "redirect", "directResponse") is { } kind)
            {
                if (kind == "redirect")
                {
                    redirect = ReadRedirect(rd, $"{key}.redirect", errors);
                }
                else
                {
                    direct = ReadDirectResponse(dr, $"{key}.directResponse", errors);
                }
            }

            foreach (var notHere in (ReadOnlySpan<string>)["subset", "rewrite", "requestHeaders"])
            {
                if (e.TryGetProperty(notHere, out _))
                {
                    errors.Add($"{key}.{notHere}: a route that answers itself ({(rd.ValueKind != JsonValueKind.Undefined ? "redirect" : "directResponse")}) sends nothing upstream");
                }
            }
        }
        else if (hasService == hasSplit)
        {
            errors.Add($"{key}: needs exactly one of 'service', 'split', 'redirect' or 'directResponse'");
        }
        else if (hasService)
        {
            var service = ReadString(e, "service", key, errors);
            var subset = ReadString(e, "subset", key, errors, required: false);
            if (service is not null)
            {
                destinations.Add(new WeightedDestinationConfig(service, subset));
            }
        }
        else
        {
            if (e.TryGetProperty("subset", out _))
            {
                errors.Add($"{key}.subset: goes inside each split entry");
            }

            ReadArray(split, $"{key}.split", errors, (item, itemKey) =>
            {
                if (ReadWeighted(item, itemKey, errors) is { } d)
                {
                    destinations.Add(d);
                }
            });
            if (split.ValueKind == JsonValueKind.Array && split.GetArrayLength() == 0)
            {
                errors.Add($"{key}.split: must not be empty");
            }

            long total = 0;
            foreach (var d in destinations)
            {
                total += d.Weight;
            }

            if (total > int.MaxValue)
            {
                errors.Add($"{key}.split: the weights add up to more than {int.MaxValue}");
            }
        }

        if (!local && e.TryGetProperty("rewrite", out var rw))
        {
            rewrite = ReadRewrite(rw, $"{key}.rewrite", errors);
        }

        var request = !local && e.TryGetProperty("requestHeaders", out var rq) ? ReadMutations(rq, $"{key}.requestHeaders", errors) : new HeaderMutationsConfig();
        var response = e.TryGetProperty("responseHeaders", out var rs) ? ReadMutations(rs, $"{key}.responseHeaders", errors) : new HeaderMutationsConfig();
        if (rewrite?.Host is not null && request is not null && request.Set.Concat(request.Add).Any(static f => f.Key.Equals("host", StringComparison.OrdinalIgnoreCase)))
        {
            errors.Add($"{key}.rewrite.host: the request's Host is also set by requestHeaders; keep one of them");
        }

        return errors.Count == before && request is not null && response is not null
            ? new RouteActionConfig { Destinations = destinations, RequestHeaders = request, ResponseHeaders = response, Rewrite = rewrite, Redirect = redirect, DirectResponse = direct }
            : null;
    }

    /// <summary>
    /// What only the whole route can check: a prefix replacement needs a path match whose matched part is known
    /// (exact, prefix or segmentPrefix), and a route that answers itself has no use for retries, upstream timeouts or
    /// injected faults (they act on the upstream request).
    /// </summary>
    private static void CheckActionFitsRoute(JsonElement route, string key, RouteMatchConfig match, RouteActionConfig action, List<string> errors)
    {
        var prefixKey = action.Rewrite?.PathPrefix is not null ? $"{key}.action.rewrite.pathPrefix"
            : action.Redirect?.PathPrefix is not null ? $"{key}.action.redirect.pathPrefix" : null;
        if (prefixKey is not null && match.Path is not { Kind: PathMatchKind.Exact or PathMatchKind.Prefix or PathMatchKind.SegmentPrefix })
        {
            errors.Add($"{prefixKey}: replaces the part of the path that match.path matched, so the route needs a match.path of exact, prefix or segmentPrefix (use 'path' to replace the whole path)");
        }

        if (action.Redirect is null && action.DirectResponse is null)
        {
            return;
        }

        var what = action.Redirect is not null ? "redirect" : "directResponse";
        foreach (var notHere in (ReadOnlySpan<string>)["retries", "timeouts", "fault"])
        {
            if (route.TryGetProperty(notHere, out _))
            {
                errors.Add($"{key}.{notHere}: the route answers itself ({what}) and sends nothing upstream");
            }
        }
    }

    private static RouteRewriteConfig? ReadRewrite(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "path", "pathPrefix", "host"))
        {
            return null;
        }

        var before = errors.Count;
        var (path, prefix) = ReadNewPath(e, key, errors);
        var host = e.TryGetProperty("host", out var h) ? ReadStringValue(h, $"{key}.host", errors) : null;
        if (host is not null && !IsAuthority(host))
        {
            errors.Add($"{key}.host: '{host}' must be a host name or IP address, optionally with ':port'");
        }

        if (errors.Count == before && path is null && prefix is null && host is null)
        {
            errors.Add($"{key}: needs at least one of path, pathPrefix or host");
        }

        return errors.Count == before ? new RouteRewriteConfig { Path = path, PathPrefix = prefix, Host = host } : null;
    }

    private static RouteRedirectConfig? ReadRedirect(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "scheme", "host", "port", "path", "pathPrefix", "status", "stripQuery"))
        {
            return null;
        }

        var before = errors.Count;
        var scheme = e.TryGetProperty("scheme", out var sc) ? ReadStringValue(sc, $"{key}.scheme", errors) : null;
        if (scheme is not null && scheme is not ("http" or "https"))
        {
            errors.Add($"{key}.scheme: must be \"http\" or \"https\"");
        }

        var host = e.TryGetProperty("host", out var h) ? ReadStringValue(h, $"{key}.host", errors) : null;
        if (host is not null && (!IsAuthority(host) || HasPort(host)))
        {
            errors.Add($"{key}.host: '{host}' must be a host name or IP address without a port (the port goes in 'port')");
        }

        int? port = null;
        if (e.TryGetProperty("port", out var p))
        {
            if (p.ValueKind != JsonValueKind.Number || !p.TryGetInt32(out var n) || n is < 1 or > 65535)
            {
                errors.Add($"{key}.port: must be an integer from 1 to 65535");
            }
            else
            {
                port = n;
            }
        }

        var status = 302;
        if (e.TryGetProperty("status", out var st))
        {
            if (st.ValueKind != JsonValueKind.Number || !st.TryGetInt32(out status) || status is not (301 or 302 or 303 or 307 or 308))
            {
                errors.Add($"{key}.status: must be 301, 302, 303, 307 or 308");
            }
        }

        var stripQuery = false;
        if (e.TryGetProperty("stripQuery", out var sq))
        {
            if (sq.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                errors.Add($"{key}.stripQuery: must be true or false");
            }
            else
            {
                stripQuery = sq.GetBoolean();
            }
        }

        var (path, prefix) = ReadNewPath(e, key, errors);
        return errors.Count == before
            ? new RouteRedirectConfig { Scheme = scheme, Host = host, Port = port, Path = path, PathPrefix = prefix, Status = status, StripQuery = stripQuery }
            : null;
    }

    private static DirectResponseConfig? ReadDirectResponse(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "status", "body"))
        {
            return null;
        }

        var before = errors.Count;
        var status = 0;
        if (!e.TryGetProperty("status", out var st))
        {
            errors.Add($"{key}.status: missing");
        }
        else if (st.ValueKind != JsonValueKind.Number || !st.TryGetInt32(out status) || status is < 200 or > 599)
        {
            errors.Add($"{key}.status: must be an integer from 200 to 599");
        }

        var body = e.TryGetProperty("body", out var b) ? ReadStringValue(b, $"{key}.body", errors, allowEmpty: true) : "";
        if (body is not null && System.Text.Encoding.UTF8.GetByteCount(body) > MaxDirectBody)
        {
            errors.Add($"{key}.body: longer than {MaxDirectBody} bytes");
        }

        return errors.Count == before && body is not null ? new DirectResponseConfig(status, body) : null;
    }

    /// <summary>The largest direct response body (UTF-8 bytes): a short page, not a file server.</summary>
    public const int MaxDirectBody = 65536;

    /// <summary>Reads "path" / "pathPrefix" (not both): each starts with '/', visible ASCII without '?' or '#'.</summary>
    private static (string? Path, string? Prefix) ReadNewPath(JsonElement e, string key, List<string> errors)
    {
        var hasPath = e.TryGetProperty("path", out var p);
        var hasPrefix = e.TryGetProperty("pathPrefix", out var pp);
        if (hasPath && hasPrefix)
        {
            errors.Add($"{key}: 'path' and 'pathPrefix' cannot be combined");
            return (null, null);
        }

        var name = hasPath ? "path" : "pathPrefix";
        var value = hasPath || hasPrefix ? ReadStringValue(hasPath ? p : pp, $"{key}.{name}", errors) : null;
        if (value is not null && (value[0] != '/' || !IsAsciiVisible(value) || value.AsSpan().IndexOfAny("?#") >= 0))
        {
            errors.Add($"{key}.{name}: must start with '/' and contain only visible ASCII characters, without '?' or '#'");
            return (null, null);
        }

        return hasPath ? (value, null) : (null, value);
    }

    /// <summary>A host name, IPv4 address or bracketed IPv6 literal, with an optional :port (1-65535).</summary>
    private static bool IsAuthority(string value)
    {
        var host = value;
        var portText = (string?)null;
        if (value.StartsWith('['))
        {
            var close = value.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || !System.Net.IPAddress.TryParse(value[1..close], out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                return false;
            }

            host = "x";
            portText = close + 1 == value.Length ? null : value[(close + 1)..] is [':', .. var rest] ? rest : "";
        }
        else if (value.LastIndexOf(':') is var colon and >= 0)
        {
            host = value[..colon];
            portText = value[(colon + 1)..];
        }

        if (portText is not null && (!int.TryParse(portText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535))
        {
            return false;
        }

        foreach (var c in host)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_'))
            {
                return false;
            }
        }

        return host.Length > 0 && host[0] != '.' && host[0] != '-';
    }

    private static bool HasPort(string authority) =>
        authority.StartsWith('[') ? authority.Contains("]:", StringComparison.Ordinal) : authority.Contains(':', StringComparison.Ordinal);

    private static WeightedDestinationConfig? ReadWeighted(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "service", "subset", "weight"))
        {
            return null;
        }

        var service = ReadString(e, "service", key, errors);
        var subset = ReadString(e, "subset", key, errors, required: false);
        if (!e.TryGetProperty("weight", out var w))
        {
            errors.Add($"{key}.weight: missing");
            return null;
        }

        if (w.ValueKind != JsonValueKind.Number || !w.TryGetInt32(out var weight) || weight <= 0)
        {
            errors.Add($"{key}.weight: must be a positive integer");
            return null;
        }

        return service is null ? null : new WeightedDestinationConfig(service, subset, weight);
    }

    private static HeaderMutationsConfig? ReadMutations(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "set", "add", "remove"))
        {
            return null;
        }

        var before = errors.Count;
        var set = e.TryGetProperty("set", out var s) ? ReadFields(s, $"{key}.set", errors) : [];
        var add = e.TryGetProperty("add", out var a) ? ReadFields(a, $"{key}.add", errors) : [];
        var remove = new List<string>();
        if (e.TryGetProperty("remove", out var r))
        {
            ReadArray(r, $"{key}.remove", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is { } name && ValidateMutableName(name, itemKey, errors))
                {
                    remove.Add(name);
                }
            });
        }

        return errors.Count == before ? new HeaderMutationsConfig { Set = set, Add = add, Remove = remove } : null;
    }

    private static List<KeyValuePair<string, string>> ReadFields(JsonElement array, string key, List<string> errors)
    {
        var fields = new List<KeyValuePair<string, string>>();
        ReadArray(array, key, errors, (item, itemKey) =>
        {
            if (!CheckKeys(item, itemKey, errors, "name", "value"))
            {
                return;
            }

            var name = ReadString(item, "name", itemKey, errors);
            string? value = null;
            if (!item.TryGetProperty("value", out var v))
            {
                errors.Add($"{itemKey}.value: missing");
            }
            else
            {
                value = ReadStringValue(v, $"{itemKey}.value", errors, allowEmpty: true);
                if (value is not null && !IsFieldValue(value))
                {
                    errors.Add($"{itemKey}.value: contains characters not allowed in a header value");
                    value = null;
                }
            }

            if (name is not null && ValidateMutableName(name, $"{itemKey}.name", errors) && value is not null)
            {
                fields.Add(new(name, value));
            }
        });
        return fields;
    }

    private static bool ValidateMutableName(string name, string key, List<string> errors)
    {
        if (!IsToken(name))
        {
            errors.Add($"{key}: '{name}' is not a valid header name");
            return false;
        }

        if (Array.IndexOf(FramingHeaders, name.ToLowerInvariant()) >= 0)
        {
            errors.Add($"{key}: '{name}' controls message framing or the connection and cannot be changed by a route");
            return false;
        }

        return true;
    }

    private static bool ValidateHost(string host, string key, List<string> errors)
    {
        var name = host == "*" ? "" : host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        if (host != "*" && (name.Length == 0 || name.Contains('*', StringComparison.Ordinal) || !IsAsciiVisible(name) || name.AsSpan().IndexOfAny("/?#@") >= 0))
        {
            errors.Add($"{key}: '{host}' must be a host name, '*.' followed by a domain, or '*'");
            return false;
        }

        return true;
    }

    private static bool ValidateRegex(string pattern, bool ignoreCase, string key, List<string> errors)
    {
        try
        {
            _ = RouteRegex.Create(pattern, ignoreCase);
            return true;
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            // NonBacktracking refuses backreferences and lookarounds with NotSupportedException.
            errors.Add($"{key}: not a valid regular expression ({e.Message})");
            return false;
        }
    }

    /// <summary>Exactly one of <paramref name="names"/> must be present; returns it.</summary>
    private static string? OneOf(JsonElement e, string key, List<string> errors, params string[] names)
    {
        string? found = null;
        foreach (var n in names)
        {
            if (e.TryGetProperty(n, out _))
            {
                if (found is not null)
                {
                    errors.Add($"{key}: '{found}' and '{n}' cannot be combined");
                    return null;
                }

                found = n;
            }
        }

        if (found is null)
        {
            errors.Add($"{key}: needs one of {string.Join(", ", names)}");
        }

        return found;
    }

    private static bool IsToken(string s)
    {
        if (s.Length == 0)
        {
            return false;
        }

        foreach (var c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsAsciiVisible(string s)
    {
        foreach (var c in s)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>RFC 9110 field-value restricted to ASCII: visible characters, space and tab inside, none at the ends.</summary>
    private static bool IsFieldValue(string s)
    {
        foreach (var c in s)
        {
            if (c is not ((>= '!' and <= '~') or ' ' or '\t'))
            {
                return false;
            }
        }

        return s.Length == 0 || (s[0] is not (' ' or '\t') && s[^1] is not (' ' or '\t'));
    }
}

using Proxy.Core.Configuration;
using Proxy.Http.Routing;

namespace Proxy.Http.Tests.Routing;

public sealed class RouteConfigReaderTests
{
    private static IReadOnlyList<string> Errors(string json)
    {
        var result = RouteConfigReader.ReadJson(json);
        Assert.False(result.Ok);
        Assert.Null(result.Routes);
        return result.Errors;
    }

    [Fact]
    public void ReadJson_FullRoute_ReadsEveryField()
    {
        var result = RouteConfigReader.ReadJson("""
            [ { "name": "canary",
                "match": { "hosts": ["api.test", "*.api.test"], "path": { "prefix": "/v1", "ignoreCase": true }, "methods": ["GET"],
                           "headers": [{ "name": "x-a", "regex": "a+" }, { "name": "x-b", "absent": true }],
                           "query": [{ "name": "q", "exact": "1" }, { "name": "p", "present": true }] },
                "action": { "split": [{ "service": "web", "subset": "v1", "weight": 90 }, { "service": "web", "subset": "v2", "weight": 10 }],
                            "requestHeaders": { "set": [{ "name": "x-s", "value": "1" }], "add": [{ "name": "x-t", "value": "" }], "remove": ["x-r"] } } },
              { "action": { "service": "web" } }, ]
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var r = result.Routes![0];
        Assert.Equal("canary", r.Name);
        Assert.Equal(["api.test", "*.api.test"], r.Match.Hosts);
        Assert.Equal(new PathMatchConfig(PathMatchKind.Prefix, "/v1", true), r.Match.Path);
        Assert.Equal(["GET"], r.Match.Methods);
        Assert.Equal(new HeaderMatchConfig("x-a", HeaderMatchKind.Regex, "a+"), r.Match.Headers[0]);
        Assert.Equal(new HeaderMatchConfig("x-b", HeaderMatchKind.Absent), r.Match.Headers[1]);
        Assert.Equal(new QueryMatchConfig("q", QueryMatchKind.Exact, "1"), r.Match.Query[0]);
        Assert.Equal(new QueryMatchConfig("p", QueryMatchKind.Present), r.Match.Query[1]);
        Assert.Equal(new WeightedDestinationConfig("web", "v2", 10), r.Action.Destinations[1]);
        Assert.Equal("x-s", r.Action.RequestHeaders.Set[0].Key);
        Assert.Equal("", r.Action.RequestHeaders.Add[0].Value);
        Assert.Equal(["x-r"], r.Action.RequestHeaders.Remove);
        Assert.Equal("routes[1]", result.Routes[1].Name);
        Assert.Null(result.Routes[1].Match.Path);
    }

    [Fact]
    public void ReadJson_RewriteRedirectDirectResponse_ReadAndWrittenBack()
    {
        const string Json = """
            [ { "name": "api", "match": { "path": { "segmentPrefix": "/api" } },
                "action": { "service": "web", "rewrite": { "pathPrefix": "/v2", "host": "web.internal:8080" } } },
              { "name": "old", "match": { "path": { "prefix": "/old/" } },
                "action": { "redirect": { "scheme": "https", "host": "new.example", "port": 8443, "pathPrefix": "/new/", "status": 308, "stripQuery": true },
                            "responseHeaders": { "set": [{ "name": "cache-control", "value": "no-store" }] } } },
              { "name": "down", "action": { "directResponse": { "status": 503, "body": "maintenance" } }, "rateLimit": { "requests": 5, "per": "1s" } } ]
            """;
        var result = RouteConfigReader.ReadJson(Json);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var routes = result.Routes!;
        Assert.Equal(new RouteRewriteConfig { PathPrefix = "/v2", Host = "web.internal:8080" }, routes[0].Action.Rewrite);
        Assert.Equal(new RouteRedirectConfig { Scheme = "https", Host = "new.example", Port = 8443, PathPrefix = "/new/", Status = 308, StripQuery = true }, routes[1].Action.Redirect);
        Assert.Empty(routes[1].Action.Destinations);
        Assert.Equal("no-store", routes[1].Action.ResponseHeaders.Set[0].Value);
        Assert.Equal(new DirectResponseConfig(503, "maintenance"), routes[2].Action.DirectResponse);
        Assert.Equal(302, RouteConfigReader.ReadJson("""[{ "action": { "redirect": {} } }]""").Routes![0].Action.Redirect!.Status);

        // /config writes routes in the shape the reader reads.
        using var stream = new MemoryStream();
        using (var writer = new System.Text.Json.Utf8JsonWriter(stream))
        {
            RouteConfigJson.Write(routes, writer);
        }

        var again = RouteConfigReader.ReadJson(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
        Assert.True(again.Ok, string.Join("\n", again.Errors));
        Assert.Equal(routes[0].Action.Rewrite, again.Routes![0].Action.Rewrite);
        Assert.Equal(routes[1].Action.Redirect, again.Routes[1].Action.Redirect);
        Assert.Equal(routes[2].Action.DirectResponse, again.Routes[2].Action.DirectResponse);
    }

    [Theory]
    [InlineData("""[{ "action": { "service": "s" }, "extra": 1 }]""", "routes[0].extra: unknown key")]
    [InlineData("""[{ "match": { "paths": {} }, "action": { "service": "s" } }]""", "routes[0].match.paths: unknown key")]
    [InlineData("""[{ "match": { "sourcePrincipals": ["spiffe://td/*/sa/*"] }, "action": { "service": "s" } }]""", "routes[0].match.sourcePrincipals[0]: \"spiffe://td/*/sa/*\" may have one * only")]
    [InlineData("""[{ "match": { "sourcePrincipals": "spiffe://td/x" }, "action": { "service": "s" } }]""", "routes[0].match.sourcePrincipals: must be an array")]
    [InlineData("""[{ "match": { "path": { "regex": "(" } }, "action": { "service": "s" } }]""", "routes[0].match.path.regex: not a valid regular expression")]
    [InlineData("""[{ "match": { "path": { "regex": "(a)\\1" } }, "action": { "service": "s" } }]""", "routes[0].match.path.regex: not a valid regular expression")]
    [InlineData("""[{ "match": { "headers": [{ "name": "x", "regex": "[" }] }, "action": { "service": "s" } }]""", "routes[0].match.headers[0].regex: not a valid regular expression")]
    [InlineData("""[{ "match": { "path": { "exact": "a" } }, "action": { "service": "s" } }]""", "routes[0].match.path.exact: must start with '/'")]
    [InlineData("""[{ "match": { "path": { "exact": "/a", "prefix": "/b" } }, "action": { "service": "s" } }]""", "routes[0].match.path: 'exact' and 'prefix' cannot be combined")]
    [InlineData("""[{ "match": { "path": {} }, "action": { "service": "s" } }]""", "routes[0].match.path: needs one of")]
    [InlineData("""[{ "match": { "hosts": ["a.*.com"] }, "action": { "service": "s" } }]""", "routes[0].match.hosts[0]: 'a.*.com' must be a host name")]
    [InlineData("""[{ "match": { "hosts": "a.com" }, "action": { "service": "s" } }]""", "routes[0].match.hosts: must be an array")]
    [InlineData("""[{ "match": { "methods": ["GE T"] }, "action": { "service": "s" } }]""", "routes[0].match.methods[0]: 'GE T' is not a valid method token")]
    [InlineData("""[{ "match": { "headers": [{ "name": "x" }] }, "action": { "service": "s" } }]""", "routes[0].match.headers[0]: needs one of")]
    [InlineData("""[{ "match": { "headers": [{ "name": "x", "present": false }] }, "action": { "service": "s" } }]""", "routes[0].match.headers[0].present: must be true")]
    [InlineData("""[{ "match": { "headers": [{ "name": "x y", "present": true }] }, "action": { "service": "s" } }]""", "routes[0].match.headers[0].name: 'x y' is not a valid header name")]
    [InlineData("""[{ "match": { "query": [{ "name": "a", "exact": "1&b" }] }, "action": { "service": "s" } }]""", "routes[0].match.query[0].exact: must be visible ASCII")]
    [InlineData("""[{ "match": { "query": [{ "name": "a", "present": 1 }] }, "action": { "service": "s" } }]""", "routes[0].match.query[0].present: must be true")]
    [InlineData("""[{ "name": "r" }]""", "routes[0].action: missing")]
    [InlineData("""[{ "action": {} }]""", "routes[0].action: needs exactly one of 'service', 'split', 'redirect' or 'directResponse'")]
    [InlineData("""[{ "action": { "service": "s", "split": [] } }]""", "routes[0].action: needs exactly one of 'service', 'split', 'redirect' or 'directResponse'")]
    [InlineData("""[{ "action": { "split": [] } }]""", "routes[0].action.split: must not be empty")]
    [InlineData("""[{ "action": { "split": [{ "service": "a", "weight": 0 }] } }]""", "routes[0].action.split[0].weight: must be a positive integer")]
    [InlineData("""[{ "action": { "split": [{ "service": "a", "weight": 1.5 }] } }]""", "routes[0].action.split[0].weight: must be a positive integer")]
    [InlineData("""[{ "action": { "split": [{ "service": "a" }] } }]""", "routes[0].action.split[0].weight: missing")]
    [InlineData("""[{ "action": { "split": [{ "service": "a", "weight": 2147483647 }, { "service": "b", "weight": 1 }] } }]""", "routes[0].action.split: the weights add up to more than")]
    [InlineData("""[{ "action": { "split": [{ "subset": "v1", "weight": 1 }] } }]""", "routes[0].action.split[0].service: missing")]
    [InlineData("""[{ "action": { "service": "s", "requestHeaders": { "set": [{ "name": "Content-Length", "value": "1" }] } } }]""", "routes[0].action.requestHeaders.set[0].name: 'Content-Length' controls message framing")]
    [InlineData("""[{ "action": { "service": "s", "responseHeaders": { "remove": ["transfer-encoding"] } } }]""", "routes[0].action.responseHeaders.remove[0]: 'transfer-encoding' controls message framing")]
    [InlineData("""[{ "action": { "service": "s", "requestHeaders": { "add": [{ "name": "x", "value": "a\r\nb: c" }] } } }]""", "routes[0].action.requestHeaders.add[0].value: contains characters not allowed")]
    [InlineData("""[{ "action": { "service": "s", "requestHeaders": { "add": [{ "name": "x" }] } } }]""", "routes[0].action.requestHeaders.add[0].value: missing")]
    [InlineData("""[{ "action": { "service": "s", "requestHeaders": { "replace": [] } } }]""", "routes[0].action.requestHeaders.replace: unknown key")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": {} } }]""", "routes[0].action.rewrite: needs at least one of path, pathPrefix or host")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "path": "/a", "pathPrefix": "/b" } } }]""", "routes[0].action.rewrite: 'path' and 'pathPrefix' cannot be combined")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "path": "a" } } }]""", "routes[0].action.rewrite.path: must start with '/'")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "path": "/a?b" } } }]""", "routes[0].action.rewrite.path: must start with '/' and contain only visible ASCII characters, without '?' or '#'")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "pathPrefix": "/v2" } } }]""", "routes[0].action.rewrite.pathPrefix: replaces the part of the path that match.path matched")]
    [InlineData("""[{ "match": { "path": { "regex": "/a.*" } }, "action": { "service": "s", "rewrite": { "pathPrefix": "/v2" } } }]""", "routes[0].action.rewrite.pathPrefix: replaces the part")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "host": "a b" } } }]""", "routes[0].action.rewrite.host: 'a b' must be a host name or IP address, optionally with ':port'")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "host": "a:70000" } } }]""", "routes[0].action.rewrite.host: 'a:70000' must be")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "host": "a" }, "requestHeaders": { "set": [{ "name": "Host", "value": "b" }] } } }]""", "routes[0].action.rewrite.host: the request's Host is also set by requestHeaders")]
    [InlineData("""[{ "action": { "service": "s", "rewrite": { "paths": "/" } } }]""", "routes[0].action.rewrite.paths: unknown key")]
    [InlineData("""[{ "action": { "service": "s", "redirect": {} } }]""", "routes[0].action: 'service' and 'redirect' cannot be combined")]
    [InlineData("""[{ "action": { "redirect": {}, "directResponse": { "status": 200 } } }]""", "routes[0].action: 'redirect' and 'directResponse' cannot be combined")]
    [InlineData("""[{ "action": { "redirect": {}, "rewrite": { "path": "/" } } }]""", "routes[0].action.rewrite: a route that answers itself (redirect) sends nothing upstream")]
    [InlineData("""[{ "action": { "directResponse": { "status": 200 }, "requestHeaders": {} } }]""", "routes[0].action.requestHeaders: a route that answers itself (directResponse) sends nothing upstream")]
    [InlineData("""[{ "action": { "redirect": { "scheme": "ftp" } } }]""", "routes[0].action.redirect.scheme: must be \"http\" or \"https\"")]
    [InlineData("""[{ "action": { "redirect": { "host": "a:80" } } }]""", "routes[0].action.redirect.host: 'a:80' must be a host name or IP address without a port")]
    [InlineData("""[{ "action": { "redirect": { "port": 0 } } }]""", "routes[0].action.redirect.port: must be an integer from 1 to 65535")]
    [InlineData("""[{ "action": { "redirect": { "status": 200 } } }]""", "routes[0].action.redirect.status: must be 301, 302, 303, 307 or 308")]
    [InlineData("""[{ "action": { "redirect": { "stripQuery": 1 } } }]""", "routes[0].action.redirect.stripQuery: must be true or false")]
    [InlineData("""[{ "action": { "redirect": { "pathPrefix": "/x" } } }]""", "routes[0].action.redirect.pathPrefix: replaces the part")]
    [InlineData("""[{ "action": { "redirect": {} }, "retries": { "maxRetries": 2 } }]""", "routes[0].retries: the route answers itself (redirect) and sends nothing upstream")]
    [InlineData("""[{ "action": { "directResponse": { "status": 200 } }, "timeouts": { "request": "1s" } }]""", "routes[0].timeouts: the route answers itself (directResponse)")]
    [InlineData("""[{ "action": { "redirect": {} }, "fault": { "abort": { "httpStatus": 503, "percentage": 100 } } }]""", "routes[0].fault: the route answers itself (redirect)")]
    [InlineData("""[{ "action": { "directResponse": {} } }]""", "routes[0].action.directResponse.status: missing")]
    [InlineData("""[{ "action": { "directResponse": { "status": 101 } } }]""", "routes[0].action.directResponse.status: must be an integer from 200 to 599")]
    [InlineData("""[{ "action": { "directResponse": { "status": 200, "body": 1 } } }]""", "routes[0].action.directResponse.body: must be a string")]
    [InlineData("""[{ "name": "a", "action": { "service": "s" } }, { "name": "a", "action": { "service": "s" } }]""", "routes[1].name: duplicate route name 'a'")]
    [InlineData("""{ "routes": [] }""", "routes: must be an array")]
    [InlineData("""[1]""", "routes[0]: must be an object")]
    [InlineData("""[{""", "routes: not valid JSON")]
    public void ReadJson_InvalidConfig_ErrorNamesKey(string json, string expectedStart)
    {
        var errors = Errors(json);
        Assert.Contains(errors, e => e.StartsWith(expectedStart, StringComparison.Ordinal));
    }

    [Fact]
    public void ReadJson_SeveralErrors_ReportsAll()
    {
        var errors = Errors("""
            [ { "match": { "path": { "regex": "(" } }, "action": { "service": "s" } },
              { "match": { "hosts": ["*x"] }, "action": { "split": [{ "service": "a", "weight": -1 }] } } ]
            """);
        Assert.Contains(errors, e => e.StartsWith("routes[0].match.path.regex:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("routes[1].match.hosts[0]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("routes[1].action.split[0].weight:", StringComparison.Ordinal));
    }

    [Fact]
    public void Read_CustomKey_PrefixesErrors()
    {
        using var doc = System.Text.Json.JsonDocument.Parse("""{ "routes": [{ "bad": 1, "action": { "service": "s" } }] }""");
        var result = RouteConfigReader.Read(doc.RootElement.GetProperty("routes"), "listeners[0].routes");
        // The known keys grow with features: the message's start is what this test is about.
        Assert.StartsWith("listeners[0].routes[0].bad: unknown key (known: name, match, action, ", Assert.Single(result.Errors), StringComparison.Ordinal);
    }
}

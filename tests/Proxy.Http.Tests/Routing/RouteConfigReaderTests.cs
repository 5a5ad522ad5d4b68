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
    [InlineData("""[{ "action": {} }]""", "routes[0].action: needs exactly one of 'service' or 'split'")]
    [InlineData("""[{ "action": { "service": "s", "split": [] } }]""", "routes[0].action: needs exactly one of 'service' or 'split'")]
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

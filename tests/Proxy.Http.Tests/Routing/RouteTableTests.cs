using Proxy.Core.Configuration;
using Proxy.Http.Routing;
using static Proxy.Http.Tests.Routing.RoutingTestHelpers;

namespace Proxy.Http.Tests.Routing;

public sealed class RouteTableTests
{
    [Theory]
    [InlineData("example.com", true)]
    [InlineData("EXAMPLE.com", true)]
    [InlineData("example.com:8080", true)]
    [InlineData("example.com.", true)]
    [InlineData("www.example.com", false)]
    [InlineData("example.org", false)]
    [InlineData("xexample.com", false)]
    public void TryMatch_ExactHost_CaseInsensitivePortIgnored(string host, bool expected)
    {
        var table = One("""{ "hosts": ["Example.COM"] }""");
        Assert.Equal(expected, table.TryMatch(Get("/", host), out _));
    }

    [Theory]
    [InlineData("a.example.com", true)]
    [InlineData("A.B.Example.Com:443", true)]
    [InlineData("example.com", false)]
    [InlineData(".example.com", false)]
    [InlineData("aexample.com", false)]
    [InlineData("example.com.evil", false)]
    public void TryMatch_WildcardHost_MatchesSubdomainsOnly(string host, bool expected)
    {
        var table = One("""{ "hosts": ["*.example.com"] }""");
        Assert.Equal(expected, table.TryMatch(Get("/", host), out _));
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/web/sa/frontend", true)]
    [InlineData("spiffe://cluster.local/ns/web/sa/other", true)]
    [InlineData("spiffe://cluster.local/ns/batch/sa/jobs", false)]
    [InlineData("spiffe://other.td/sa/admin", true)]
    [InlineData(null, false)]
    public void TryMatch_SourcePrincipals_ByTheCallersVerifiedIdentity(string? peer, bool expected)
    {
        var table = One("""{ "sourcePrincipals": ["spiffe://cluster.local/ns/web/*", "*/sa/admin"] }""");
        Assert.Equal(expected, table.TryMatch(Get("/", "example.com"), peer, out _));
    }

    [Fact]
    public void TryMatch_SourcePrincipalsStar_AnyIdentifiedCallerOnly()
    {
        var table = One("""{ "sourcePrincipals": ["*"] }""");
        Assert.True(table.TryMatch(Get("/", "example.com"), "spiffe://td/x", out _));
        Assert.False(table.TryMatch(Get("/", "example.com"), out _));
    }

    [Fact]
    public void TryMatch_StarHost_MatchesAnyHostIncludingNone()
    {
        var table = One("""{ "hosts": ["*"] }""");
        Assert.True(table.TryMatch(Get("/", "anything.test"), out _));
        Assert.True(table.TryMatch(Head("GET / HTTP/1.0\r\n\r\n"), out _));
    }

    [Fact]
    public void TryMatch_ExactHostWithoutHostHeader_DoesNotMatch()
    {
        var table = One("""{ "hosts": ["example.com"] }""");
        Assert.False(table.TryMatch(Head("GET / HTTP/1.0\r\n\r\n"), out _));
    }

    [Theory]
    [InlineData("[::1]:8080", true)]
    [InlineData("[::1]", true)]
    [InlineData("[::2]", false)]
    public void TryMatch_Ipv6Host_PortStripped(string host, bool expected)
    {
        var table = One("""{ "hosts": ["[::1]"] }""");
        Assert.Equal(expected, table.TryMatch(Get("/", host), out _));
    }

    [Fact]
    public void TryMatch_AbsoluteFormTarget_UsesTargetAuthorityAndPath()
    {
        var table = One("""{ "hosts": ["api.test"], "path": { "exact": "/v1" } }""");
        Assert.True(table.TryMatch(Head("GET http://api.test:81/v1?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("GET http://other/v1 HTTP/1.1\r\nHost: api.test\r\n\r\n"), out _));
    }

    [Theory]
    [InlineData("/a/b", true)]
    [InlineData("/a/b?q=1", true)]
    [InlineData("/a/b/", false)]
    [InlineData("/A/B", false)]
    [InlineData("/a", false)]
    public void TryMatch_ExactPath_CaseSensitiveQueryIgnored(string target, bool expected)
    {
        Assert.Equal(expected, One("""{ "path": { "exact": "/a/b" } }""").TryMatch(Get(target), out _));
    }

    [Fact]
    public void TryMatch_ExactPathIgnoreCase_MatchesOtherCase()
    {
        Assert.True(One("""{ "path": { "exact": "/a/b", "ignoreCase": true } }""").TryMatch(Get("/A/B"), out _));
    }

    [Theory]
    [InlineData("/api", true)]
    [InlineData("/api/v1", true)]
    [InlineData("/apiv1", true)]
    [InlineData("/ap", false)]
    [InlineData("/API", false)]
    public void TryMatch_PrefixPath_MatchesStart(string target, bool expected)
    {
        Assert.Equal(expected, One("""{ "path": { "prefix": "/api" } }""").TryMatch(Get(target), out _));
    }

    [Theory]
    [InlineData("/api", true)]
    [InlineData("/api/", true)]
    [InlineData("/api/v1", true)]
    [InlineData("/api?x", true)]
    [InlineData("/apiv1", false)]
    public void TryMatch_SegmentPrefixPath_RespectsSegments(string target, bool expected)
    {
        Assert.Equal(expected, One("""{ "path": { "segmentPrefix": "/api" } }""").TryMatch(Get(target), out _));
    }

    [Theory]
    [InlineData("/users/42", true)]
    [InlineData("/users/42?x=y", true)]
    [InlineData("/users/abc", false)]
    [InlineData("/users/42/x", false)]
    [InlineData("/x/users/42", false)]
    public void TryMatch_RegexPath_WholePathAnchored(string target, bool expected)
    {
        Assert.Equal(expected, One("""{ "path": { "regex": "/users/[0-9]+" } }""").TryMatch(Get(target), out _));
    }

    [Fact]
    public void TryMatch_RegexPathLongerThanStackBuffer_Matches()
    {
        var table = One("""{ "path": { "regex": "/long/a+" } }""");
        Assert.True(table.TryMatch(Get("/long/" + new string('a', 1000)), out _));
        Assert.False(table.TryMatch(Get("/long/" + new string('a', 1000) + "b"), out _));
    }

    [Theory]
    [InlineData("GET", true)]
    [InlineData("POST", true)]
    [InlineData("PUT", false)]
    [InlineData("PURGE", true)]
    [InlineData("BREW", false)]
    public void TryMatch_MethodSet_MatchesListedMethodsIncludingUnregistered(string method, bool expected)
    {
        var table = One("""{ "methods": ["GET", "POST", "PURGE"] }""");
        Assert.Equal(expected, table.TryMatch(Head($"{method} / HTTP/1.1\r\nHost: h\r\n\r\n"), out _));
    }

    [Theory]
    [InlineData("""{ "name": "X-Env", "exact": "canary" }""", "x-env: canary\r\n", true)]
    [InlineData("""{ "name": "X-Env", "exact": "canary" }""", "x-env: Canary\r\n", false)]
    [InlineData("""{ "name": "X-Env", "exact": "canary" }""", "", false)]
    [InlineData("""{ "name": "X-Env", "exact": "canary" }""", "X-Env: prod\r\nX-ENV: canary\r\n", true)]
    [InlineData("""{ "name": "user-agent", "prefix": "curl/" }""", "User-Agent: curl/8.0\r\n", true)]
    [InlineData("""{ "name": "user-agent", "prefix": "curl/" }""", "User-Agent: Mozilla curl/8.0\r\n", false)]
    [InlineData("""{ "name": "x-debug", "present": true }""", "X-Debug: \r\n", true)]
    [InlineData("""{ "name": "x-debug", "present": true }""", "X-Other: 1\r\n", false)]
    [InlineData("""{ "name": "x-debug", "absent": true }""", "X-Other: 1\r\n", true)]
    [InlineData("""{ "name": "x-debug", "absent": true }""", "x-debug: 1\r\n", false)]
    [InlineData("""{ "name": "x-user", "regex": "u[0-9]{3}" }""", "x-user: u123\r\n", true)]
    [InlineData("""{ "name": "x-user", "regex": "u[0-9]{3}" }""", "x-user: u1234\r\n", false)]
    public void TryMatch_HeaderMatcher_MatchesAsConfigured(string matcher, string headers, bool expected)
    {
        var table = One($$"""{ "headers": [{{matcher}}] }""");
        Assert.Equal(expected, table.TryMatch(Get("/", extra: headers), out _));
    }

    [Theory]
    [InlineData("/?a=1&b", true)]
    [InlineData("/?b&a=1", true)]
    [InlineData("/?a=2&a=1&b=", true)]
    [InlineData("/?a=1", false)]
    [InlineData("/?b", false)]
    [InlineData("/?a=10&b", false)]
    [InlineData("/?aa=1&b", false)]
    [InlineData("/?&&a=1&&b&", true)]
    [InlineData("/?b#a=1", false)]
    [InlineData("/", false)]
    [InlineData("/?", false)]
    public void TryMatch_QueryMatchers_ParseRawQuery(string target, bool expected)
    {
        var table = One("""{ "query": [{ "name": "a", "exact": "1" }, { "name": "b", "present": true }] }""");
        Assert.Equal(expected, table.TryMatch(Get(target), out _));
    }

    [Theory]
    [InlineData("/?e=", true)]
    [InlineData("/?e", true)]
    [InlineData("/?e=x", false)]
    public void TryMatch_QueryExactEmptyValue_MatchesWithOrWithoutEquals(string target, bool expected)
    {
        Assert.Equal(expected, One("""{ "query": [{ "name": "e", "exact": "" }] }""").TryMatch(Get(target), out _));
    }

    [Fact]
    public void TryMatch_SeveralRoutesMatch_FirstWins()
    {
        var table = Table("""
            [ { "name": "specific", "match": { "path": { "prefix": "/api/v2" } }, "action": { "service": "v2" } },
              { "name": "api", "match": { "path": { "prefix": "/api" } }, "action": { "service": "api" } },
              { "name": "default", "action": { "service": "web" } } ]
            """);
        Assert.Equal("specific", MatchName(table, Get("/api/v2/x")));
        Assert.Equal("api", MatchName(table, Get("/api/v1")));
        Assert.Equal("default", MatchName(table, Get("/")));
    }

    [Fact]
    public void TryMatch_AllConditionsMustHold_AnyFailingConditionRejects()
    {
        var table = One("""{ "hosts": ["h"], "path": { "prefix": "/p" }, "methods": ["GET"], "headers": [{ "name": "x", "present": true }], "query": [{ "name": "q", "present": true }] }""");
        Assert.True(table.TryMatch(Head("GET /p?q HTTP/1.1\r\nHost: h\r\nx: 1\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("POST /p?q HTTP/1.1\r\nHost: h\r\nx: 1\r\nContent-Length: 0\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("GET /p?q HTTP/1.1\r\nHost: g\r\nx: 1\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("GET /z?q HTTP/1.1\r\nHost: h\r\nx: 1\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n"), out _));
        Assert.False(table.TryMatch(Head("GET /p HTTP/1.1\r\nHost: h\r\nx: 1\r\n\r\n"), out _));
    }

    [Fact]
    public void TryMatch_AbHeaderRouteBeforeDefault_RoutesByHeader()
    {
        var table = Table("""
            [ { "name": "b", "match": { "headers": [{ "name": "x-variant", "exact": "b" }] }, "action": { "service": "web", "subset": "v2" } },
              { "name": "a", "action": { "service": "web", "subset": "v1" } } ]
            """);
        var random = new ScriptedRandomSource(0);
        Assert.True(table.TryMatch(Get("/", extra: "X-Variant: b\r\n"), out var rb));
        Assert.Equal("v2", rb.Action.PickDestination(random).Subset);
        Assert.True(table.TryMatch(Get("/", extra: "X-Variant: a\r\n"), out var ra));
        Assert.Equal("v1", ra.Action.PickDestination(random).Subset);
        Assert.True(table.TryMatch(Get("/"), out var rn));
        Assert.Equal("v1", rn.Action.PickDestination(random).Subset);
    }

    [Fact]
    public void TryMatch_NothingMatches_FalseAndDescribesRequest()
    {
        var table = One("""{ "path": { "prefix": "/api" } }""");
        var head = Get("/path?secret=1", "Example.com:8080");
        Assert.False(table.TryMatch(head, out var route));
        Assert.Null(route);
        Assert.Equal("no_route", RouteTable.NoRouteReason);
        Assert.Equal("no route matched GET Example.com/path on listener inbound", RouteTable.DescribeNoRoute(head, "inbound"));
    }

    [Fact]
    public void TryMatch_AbsoluteFormWithoutPath_PathIsSlash()
    {
        var table = One("""{ "hosts": ["api.test"], "path": { "exact": "/" } }""");
        Assert.True(table.TryMatch(Head("GET http://user@api.test HTTP/1.1\r\nHost: api.test\r\n\r\n"), out _));
    }

    [Fact]
    public void TryMatch_ConnectAuthorityForm_HostFromTargetAndEmptyPath()
    {
        var table = Table("""
            [ { "name": "path", "match": { "path": { "prefix": "/" } }, "action": { "service": "x" } },
              { "name": "tunnel", "match": { "hosts": ["db.test"], "methods": ["CONNECT"] }, "action": { "service": "db" } } ]
            """);
        Assert.Equal("tunnel", MatchName(table, Head("CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n")));
    }

    [Fact]
    public void DescribeNoRoute_NoHostAndLongPath_ShortenedAndPrintable()
    {
        var head = Head("GET /" + new string('a', 300) + " HTTP/1.0\r\n\r\n");
        var text = RouteTable.DescribeNoRoute(head, "outbound");
        Assert.StartsWith("no route matched GET /aaa", text, StringComparison.Ordinal);
        Assert.EndsWith("a... on listener outbound", text, StringComparison.Ordinal);
    }

    [Fact]
    public void TryMatch_EmptyTable_NeverMatches()
    {
        Assert.False(RouteTable.Empty.TryMatch(Get("/"), out _));
    }

    [Fact]
    public void TryMatch_NonRegexRoutes_AllocatesNothing()
    {
        var table = Table("""
            [ { "name": "h", "match": { "hosts": ["other.test", "*.other.test"] }, "action": { "service": "x" } },
              { "name": "q", "match": { "query": [{ "name": "zz", "exact": "1" }], "methods": ["PUT", "PURGE"] }, "action": { "service": "x" } },
              { "name": "m", "match": { "hosts": ["*.example.com", "example.com"], "path": { "segmentPrefix": "/api" }, "methods": ["GET"],
                  "headers": [{ "name": "x-a", "prefix": "v" }, { "name": "x-b", "absent": true }],
                  "query": [{ "name": "a", "exact": "1" }, { "name": "b", "present": true }] },
                "action": { "split": [{ "service": "s", "subset": "v1", "weight": 9 }, { "service": "s", "subset": "v2", "weight": 1 }] } } ]
            """);
        var head = Get("/api/x?c=3&a=1&b", "www.example.com:80", "X-A: v1\r\n");
        var random = new SeededRandomSource(1);
        Assert.True(table.TryMatch(head, out _));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            table.TryMatch(head, out var route);
            route!.Action.PickDestination(random);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void TryMatch_RegexRoutes_AllocatesNothingInSteadyState()
    {
        var table = One("""{ "path": { "regex": "/users/[0-9]+" }, "headers": [{ "name": "x-user", "regex": "u[0-9]+" }] }""");
        var head = Get("/users/42", extra: "x-user: u7\r\n");
        Assert.True(table.TryMatch(head, out _));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            table.TryMatch(head, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

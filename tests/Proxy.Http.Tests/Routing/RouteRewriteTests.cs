using System.Buffers;
using System.Text;
using Proxy.Core.Configuration;
using Proxy.Http.Http1;
using Proxy.Http.Routing;
using static Proxy.Http.Tests.Routing.RoutingTestHelpers;

namespace Proxy.Http.Tests.Routing;

public sealed class RouteRewriteTests
{
    private static RouteAction Action(string match, string action) =>
        Table($$"""[{ "name": "r", "match": {{match}}, "action": {{action}} }]""").Routes[0].Action;

    private static string Upstream(RouteAction action, string target, Http1TargetForm form = Http1TargetForm.Origin)
    {
        var bytes = Encoding.ASCII.GetBytes(target);
        var destination = new byte[action.MaxUpstreamTargetLength(bytes)];
        var n = action.WriteUpstreamTarget(bytes, form, destination);
        return n < 0 ? "(unchanged)" : Encoding.ASCII.GetString(destination, 0, n);
    }

    // Gateway API's ReplacePrefixMatch table (HTTPPathModifier), plus Envoy-style plain prefixes.
    [Theory]
    [InlineData("/foo", "/foo/bar", "/xyz", "/xyz/bar")]
    [InlineData("/foo", "/foo/bar", "/xyz/", "/xyz/bar")]
    [InlineData("/foo/", "/foo/bar", "/xyz", "/xyz/bar")]
    [InlineData("/foo/", "/foo/bar", "/xyz/", "/xyz/bar")]
    [InlineData("/foo", "/foo", "/xyz", "/xyz")]
    [InlineData("/foo", "/foo/", "/xyz", "/xyz/")]
    [InlineData("/foo", "/foo/bar", "/", "/bar")]
    [InlineData("/foo", "/foo/", "/", "/")]
    [InlineData("/foo", "/foo", "/", "/")]
    [InlineData("/", "/a/b", "/api", "/api/a/b")]
    [InlineData("/", "/", "/api", "/api/")]
    public void PathPrefix_SegmentPrefixMatch_ReplacesMatchedSegments(string match, string path, string replacement, string expected)
    {
        var action = Action($$"""{ "path": { "segmentPrefix": "{{match}}" } }""", $$"""{ "service": "s", "rewrite": { "pathPrefix": "{{replacement}}" } }""");
        Assert.Equal(expected, Upstream(action, path));
    }

    [Theory]
    [InlineData("/foo", "/foobar", "/xyz", "/xyzbar")]
    [InlineData("/foo", "/foobar", "/xyz/", "/xyz/bar")]
    [InlineData("/v1/", "/V1/users", "/v2/", "/v2/users")]
    public void PathPrefix_PlainPrefixMatch_ReplacesMatchedBytes(string match, string path, string replacement, string expected)
    {
        var action = Action($$"""{ "path": { "prefix": "{{match}}", "ignoreCase": true } }""", $$"""{ "service": "s", "rewrite": { "pathPrefix": "{{replacement}}" } }""");
        Assert.Equal(expected, Upstream(action, path));
    }

    [Fact]
    public void PathPrefix_ExactMatch_ReplacesWholePath()
    {
        var action = Action("""{ "path": { "exact": "/healthz" } }""", """{ "service": "s", "rewrite": { "pathPrefix": "/internal/health" } }""");
        Assert.Equal("/internal/health?full=1", Upstream(action, "/healthz?full=1"));
    }

    [Theory]
    [InlineData("/a/b?x=1&y=2", "/new?x=1&y=2")]
    [InlineData("/a/b", "/new")]
    [InlineData("/a/b?", "/new?")]
    public void Path_ReplacesWholePathAndKeepsQuery(string target, string expected)
    {
        var action = Action("""{ "path": { "regex": "/a/.*" } }""", """{ "service": "s", "rewrite": { "path": "/new" } }""");
        Assert.Equal(expected, Upstream(action, target));
    }

    [Fact]
    public void AbsoluteForm_PathAndHostRewritten_KeepsSchemeAndQuery()
    {
        var action = Action("""{ "path": { "prefix": "/api" } }""", """{ "service": "s", "rewrite": { "pathPrefix": "/v2", "host": "backend:8080" } }""");
        Assert.Equal("http://backend:8080/v2/users?id=7", Upstream(action, "http://api.example.com/api/users?id=7", Http1TargetForm.Absolute));
    }

    [Fact]
    public void HostOnly_OriginFormUnchanged_AbsoluteFormGetsNewAuthority_HostFieldSet()
    {
        var action = Action("{}", """{ "service": "s", "rewrite": { "host": "backend.internal" } }""");
        Assert.True(action.RewritesTarget);
        Assert.Equal("(unchanged)", Upstream(action, "/x?y"));
        Assert.Equal("http://backend.internal/x?y", Upstream(action, "http://old.example:81/x?y", Http1TargetForm.Absolute));
        Assert.Equal("http://backend.internal", Upstream(action, "http://old.example", Http1TargetForm.Absolute));
        Assert.True(action.RequestHeaders.IsRemoved("host"u8));
        Assert.Equal("backend.internal", Encoding.ASCII.GetString(Assert.Single(action.RequestHeaders.Sets.ToArray()).Value));
    }

    [Fact]
    public void ConnectAndAsterisk_NeverRewritten()
    {
        var action = Action("{}", """{ "service": "s", "rewrite": { "path": "/p" } }""");
        Assert.Equal("(unchanged)", Upstream(action, "example.com:443", Http1TargetForm.Authority));
        Assert.Equal("(unchanged)", Upstream(action, "*", Http1TargetForm.Asterisk));
    }

    [Fact]
    public void NoRewrite_NothingToDo()
    {
        var action = Action("{}", """{ "service": "s" }""");
        Assert.False(action.RewritesTarget);
        Assert.False(action.AnswersItself);
    }

    private static string Location(string match, string redirect, string request, bool tls = false)
    {
        var action = Action(match, $$"""{ "redirect": {{redirect}} }""");
        Assert.True(action.AnswersItself);
        var writer = new ArrayBufferWriter<byte>();
        action.Redirect!.WriteLocation(writer, new RequestView(Head(request)), tls);
        return Encoding.ASCII.GetString(writer.WrittenSpan);
    }

    [Theory]
    // A scheme without a port: that scheme's default port (Gateway API); host, path and query stay.
    [InlineData("""{ "scheme": "https" }""", "GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "https://example.com/a?b=1")]
    // Nothing but the status: the same URL (the request's own scheme and port).
    [InlineData("{}", "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://example.com:8080/a")]
    [InlineData("""{ "host": "new.example" }""", "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://new.example:8080/a")]
    [InlineData("""{ "host": "new.example", "port": 80 }""", "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://new.example/a")]
    [InlineData("""{ "scheme": "https", "port": 8443 }""", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "https://example.com:8443/")]
    [InlineData("""{ "path": "/new", "stripQuery": true }""", "GET /old?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", "http://h/new")]
    [InlineData("""{ "pathPrefix": "/v2" }""", "GET /v1/users?id=3 HTTP/1.1\r\nHost: h\r\n\r\n", "http://h/v2/users?id=3")]
    [InlineData("""{ "scheme": "http" }""", "GET /x HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", "http://[::1]/x")]
    [InlineData("{}", "GET /x HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", "http://[::1]:8443/x")]
    // An HTTP/1.0 request without Host and no host configured: a relative Location (RFC 9110 §10.2.2).
    [InlineData("""{ "scheme": "https" }""", "GET /x?q HTTP/1.0\r\n\r\n", "/x?q")]
    // Absolute-form: the target's authority is the request's host.
    [InlineData("{}", "GET http://abs.example:81/p HTTP/1.1\r\nHost: other\r\n\r\n", "http://abs.example:81/p")]
    public void Redirect_Location(string redirect, string request, string expected)
    {
        // The route's match only matters to pathPrefix (the part it replaces); WriteLocation is called directly.
        Assert.Equal(expected, Location("""{ "path": { "segmentPrefix": "/v1" } }""", redirect, request));
    }

    [Fact]
    public void Redirect_TlsClient_KeepsHttpsAndDropsDefaultPort()
    {
        Assert.Equal("https://example.com/a", Location("{}", "{}", "GET /a HTTP/1.1\r\nHost: example.com:443\r\n\r\n", tls: true));
        Assert.Equal("http://example.com/a", Location("{}", """{ "scheme": "http" }""", "GET /a HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", tls: true));
    }

    [Theory]
    [InlineData("example.com", -1)]
    [InlineData("example.com:8080", 8080)]
    [InlineData("[::1]", -1)]
    [InlineData("[::1]:9", 9)]
    [InlineData("h:0", -1)]
    [InlineData("h:99999", -1)]
    [InlineData("h:x", -1)]
    public void ParsePort(string authority, int expected) => Assert.Equal(expected, RouteRedirect.ParsePort(Encoding.ASCII.GetBytes(authority)));

    [Fact]
    public void DirectResponse_BodyAndLength()
    {
        var action = Action("{}", """{ "directResponse": { "status": 503, "body": "down for maintenance ✓\n" } }""");
        Assert.True(action.AnswersItself);
        Assert.Null(action.Redirect);
        Assert.Equal(503, action.Direct!.StatusCode);
        Assert.Equal("down for maintenance ✓\n", Encoding.UTF8.GetString(action.Direct.Body));
        Assert.Equal(0, action.Destinations.Length);
    }
}

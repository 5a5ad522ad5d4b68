using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class AuthorizationConfigTests
{
    private static ConfigResult Load(string json) => ConfigLoader.Load(new Dictionary<string, string>(), json);

    [Fact]
    public void Load_FullSection_ReadsEveryConditionAndRoundTripsThroughConfigJson()
    {
        const string json = """
            { "authorization": { "defaultDeny": true, "policies": [
                { "name": "a", "action": "allow", "rules": [ { "principals": ["spiffe://td/ns/web/*"], "notPrincipals": ["*/sa/bad"],
                  "trustDomains": ["td"], "namespaces": ["web"], "authenticated": true, "ports": [8080], "methods": ["GET"],
                  "paths": ["/api/*", "/x"], "headers": [ { "name": "x-a", "exact": "1" }, { "name": "x-b", "prefix": "p" }, { "name": "x-c", "present": true } ],
                  "requestPrincipals": ["https://i/alice"], "claims": { "role": ["admin", "ops"] } } ] },
                { "name": "d", "action": "deny", "rules": [ {} ] } ] },
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "service": "s", "protocol": "http", "authorization": true,
                  "jwt": { "issuer": "https://i", "audiences": ["api"], "jwks": "/tmp/keys.json", "jwksRefresh": "1m", "forwardSubjectHeader": "X-User", "required": false } } ],
              "services": [ { "name": "s", "endpoints": ["127.0.0.1:1"] } ] }
            """;
        var result = Load(json);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var authz = result.Config!.Authorization;
        Assert.True(authz.DefaultDeny);
        var rule = authz.Policies[0].Rules[0];
        Assert.Equal(new PathMatchConfig(PathMatchKind.Prefix, "/api/"), rule.Paths[0]);
        Assert.Equal(HeaderMatchKind.Present, rule.Headers[2].Kind);
        Assert.Equal(["admin", "ops"], rule.Claims[0].Values);
        Assert.True(rule.Authenticated);
        Assert.Equal(PolicyAction.Deny, authz.Policies[1].Action);
        var listener = result.Config.Listeners[0];
        Assert.True(listener.Authorization);
        Assert.Equal("x-user", listener.Jwt!.ForwardSubjectHeader);
        Assert.False(listener.Jwt.Required);
        Assert.Equal(TimeSpan.FromMinutes(1), listener.Jwt.JwksRefresh);

        var again = Load(ConfigJson.ToJson(result.Config));
        Assert.True(again.Ok, string.Join("\n", again.Errors));
        Assert.Equal(ConfigJson.ToJson(result.Config), ConfigJson.ToJson(again.Config!));
    }

    [Fact]
    public void Load_BadKeys_EveryErrorNamed()
    {
        var result = Load("""
            { "authorization": { "defaultDeny": "yes", "colour": 1, "policies": [
                { "name": "a", "action": "maybe", "rules": [ { "paths": ["api", "/a*b"], "ports": [0], "principals": ["a*b"], "nope": 1,
                  "headers": [ { "name": "x", "exact": "1", "prefix": "2" } ] } ] },
                { "name": "a", "action": "allow", "rules": [] },
                { "action": "deny", "rules": [ {} ] } ] },
              "listeners": [ { "name": "l", "address": "127.0.0.1:0", "service": "s", "authorization": 1,
                  "jwt": { "issuer": "i", "jwks": "http://example.com/keys", "jwksRefresh": "soon", "extra": true } } ],
              "services": [ { "name": "s", "endpoints": ["127.0.0.1:1"] } ] }
            """);
        Assert.False(result.Ok);
        var all = string.Join("\n", result.Errors);
        foreach (var expected in new[]
        {
            "authorization.defaultDeny", "authorization.colour: unknown key", "authorization.policies[0].action: \"maybe\"",
            "authorization.policies[0].rules[0].paths: \"api\"", "authorization.policies[0].rules[0].paths: \"/a*b\"",
            "authorization.policies[0].rules[0].ports[0]", "authorization.policies[0].rules[0].principals: \"a*b\"",
            "authorization.policies[0].rules[0].nope: unknown key", "authorization.policies[0].rules[0].headers[0]: needs exactly one",
            "authorization.policies[1].rules: must list at least one rule", "authorization.policies[2].name: missing",
            "listeners[0].authorization: must be true or false", "listeners[0].jwt.jwks", "listeners[0].jwt.jwksRefresh",
            "listeners[0].jwt.extra: unknown key",
        })
        {
            Assert.Contains(expected, all, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Load_RouteJwt_Read()
    {
        var result = Load("""
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0", "routes": [
                { "name": "admin", "match": { "path": { "prefix": "/admin" } }, "action": { "service": "s" },
                  "jwt": { "issuer": "i", "jwks": "https://issuer/keys" } } ] } ],
              "services": [ { "name": "s", "endpoints": ["127.0.0.1:1"] } ] }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var jwt = result.Config!.Listeners[0].Routes[0].Jwt!;
        Assert.True(jwt.Required);
        Assert.Equal("authorization", jwt.FromHeader);
    }

    [Theory]
    [InlineData("https://issuer/keys", true)]
    [InlineData("http://127.0.0.1:5000/keys", true)]
    [InlineData("http://[::1]:5000/keys", true)]
    [InlineData("http://issuer/keys", false)]
    [InlineData("ftp://issuer/keys", false)]
    public void JwksUrl_HttpsOrLoopbackHttp(string url, bool allowed) => Assert.Equal(allowed, AuthorizationConfigReader.IsAllowedJwksUrl(url));
}

using System.Text.Json;
using Proxy.Core.Configuration;
using Proxy.Core.Identity;
using Proxy.Http.Authorization;
using Proxy.Http.Http1;
using static Proxy.Http.Tests.Routing.RoutingTestHelpers;

namespace Proxy.Http.Tests.Authorization;

public sealed class AuthorizationPoliciesTests
{
    private const string Web = "spiffe://cluster.local/ns/web/sa/frontend";
    private const string Batch = "spiffe://cluster.local/ns/batch/sa/jobs";
    private const string Other = "spiffe://other.mesh/ns/web/sa/frontend";

    private static AuthorizationPolicies Policies(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var errors = new List<string>();
        var config = AuthorizationConfigReader.Read(doc.RootElement, "authorization", errors);
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        return new AuthorizationPolicies(config!);
    }

    /// <summary>One allow policy "p" with one rule.</summary>
    private static AuthorizationPolicies Allow(string rule) => Policies($$"""{ "policies": [ { "name": "p", "action": "allow", "rules": [ {{rule}} ] } ] }""");

    private static PeerIdentityFeature? Peer(string? id) => id is null ? null : new PeerIdentityFeature(id, PeerTransport.MutualTls);

    private static bool Allowed(AuthorizationPolicies p, string? peer, Http1RequestHead? head = null, int port = 8080, JwtPrincipal? jwt = null)
        => p.EvaluateHttp(Peer(peer), port, head ?? Get("/"), jwt).Allowed;

    private static JwtPrincipal Jwt(string sub, params (string Name, string[] Values)[] claims)
        => new("https://issuer", sub, claims.ToDictionary(static c => c.Name, static c => c.Values), DateTime.UtcNow.AddHours(1));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(Batch, false)]
    [InlineData(null, false)]
    public void Principals_Exact(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow($$"""{ "principals": ["{{Web}}"] }"""), peer));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(Other, false)]
    public void Principals_Prefix(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "principals": ["spiffe://cluster.local/ns/web/*"] }"""), peer));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(Batch, false)]
    public void Principals_Suffix(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "principals": ["*/sa/frontend"] }"""), peer));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(null, false)]
    public void Principals_Star_AnyAuthenticated(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "principals": ["*"] }"""), peer));

    [Theory]
    [InlineData(Web, false)]
    [InlineData(Batch, true)]
    [InlineData(null, true)]
    public void NotPrincipals(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow($$"""{ "notPrincipals": ["{{Web}}"] }"""), peer));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(Other, false)]
    [InlineData(null, false)]
    public void TrustDomains(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "trustDomains": ["cluster.local"] }"""), peer));

    [Theory]
    [InlineData(Web, true)]
    [InlineData(Batch, false)]
    [InlineData("spiffe://cluster.local/sa/web", false)]
    public void Namespaces(string? peer, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "namespaces": ["web"] }"""), peer));

    [Theory]
    [InlineData(Web, true, true)]
    [InlineData(null, true, false)]
    [InlineData(Web, false, false)]
    [InlineData(null, false, true)]
    public void Authenticated(string? peer, bool required, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow($$"""{ "authenticated": {{(required ? "true" : "false")}} }"""), peer));

    [Theory]
    [InlineData(8080, true)]
    [InlineData(9090, false)]
    public void Ports(int port, bool allowed) => Assert.Equal(allowed, Allowed(Allow("""{ "ports": [8080, 8081] }"""), null, port: port));

    [Theory]
    [InlineData("GET", true)]
    [InlineData("DELETE", false)]
    public void Methods(string method, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow("""{ "methods": ["GET", "HEAD"] }"""), null, Head($"{method} / HTTP/1.1\r\nHost: a\r\n\r\n")));

    [Theory]
    [InlineData("/health", true)]
    [InlineData("/health/x", false)]
    [InlineData("/api/v1/users?x=1", true)]
    [InlineData("/api", false)]
    [InlineData("/admin", false)]
    public void Paths_ExactAndPrefix(string target, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow("""{ "paths": ["/health", "/api/*"] }"""), null, Get(target)));

    [Theory]
    [InlineData("x-env: prod\r\n", true)]
    [InlineData("x-env: staging\r\n", false)]
    [InlineData("", false)]
    public void Headers_Exact(string extra, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow("""{ "headers": [ { "name": "X-Env", "exact": "prod" } ] }"""), null, Get("/", extra: extra)));

    [Theory]
    [InlineData("x-env: prod-eu\r\n", true)]
    [InlineData("x-env: dev\r\n", false)]
    public void Headers_Prefix(string extra, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow("""{ "headers": [ { "name": "x-env", "prefix": "prod" } ] }"""), null, Get("/", extra: extra)));

    [Theory]
    [InlineData("x-canary: \r\n", true)]
    [InlineData("", false)]
    public void Headers_Present(string extra, bool allowed)
        => Assert.Equal(allowed, Allowed(Allow("""{ "headers": [ { "name": "x-canary", "present": true } ] }"""), null, Get("/", extra: extra)));

    [Fact]
    public void RequestPrincipals_MatchIssuerSlashSubject()
    {
        var p = Allow("""{ "requestPrincipals": ["https://issuer/alice"] }""");
        Assert.True(Allowed(p, null, jwt: Jwt("alice")));
        Assert.False(Allowed(p, null, jwt: Jwt("bob")));
        Assert.False(Allowed(p, null));
        Assert.True(Allowed(Allow("""{ "requestPrincipals": ["*"] }"""), null, jwt: Jwt("bob")));
    }

    [Fact]
    public void Claims_StringAndArrayValues()
    {
        var p = Allow("""{ "paths": ["/admin/*"], "claims": { "role": ["admin"] } }""");
        Assert.True(Allowed(p, null, Get("/admin/x"), jwt: Jwt("a", ("role", ["user", "admin"]))));
        Assert.True(Allowed(p, null, Get("/admin/x"), jwt: Jwt("a", ("role", ["admin"]))));
        Assert.False(Allowed(p, null, Get("/admin/x"), jwt: Jwt("a", ("role", ["user"]))));
        Assert.False(Allowed(p, null, Get("/admin/x"), jwt: Jwt("a")));
        Assert.False(Allowed(p, null, Get("/admin/x")));
    }

    [Fact]
    public void Rule_AllConditionsMustHold_PolicyAnyRule()
    {
        var p = Allow($$"""{ "principals": ["{{Web}}"], "methods": ["GET"] }, { "paths": ["/public/*"] }""");
        Assert.True(Allowed(p, Web, Get("/x")));
        Assert.False(Allowed(p, Batch, Get("/x")));
        Assert.False(Allowed(p, Web, Head("POST /x HTTP/1.1\r\nHost: a\r\n\r\n")));
        Assert.True(Allowed(p, Batch, Get("/public/a")));
    }

    [Fact]
    public void Order_DenyBeatsAllow_ThenAllowRequired_ThenDefault()
    {
        var p = Policies($$"""
            { "policies": [
                { "name": "everyone", "action": "allow", "rules": [ {} ] },
                { "name": "no-batch", "action": "deny", "rules": [ { "namespaces": ["batch"] } ] } ] }
            """);
        Assert.Equal(new AuthorizationDecision(false, "no-batch"), p.EvaluateHttp(Peer(Batch), 80, Get("/"), null));
        Assert.Equal(new AuthorizationDecision(true, "everyone"), p.EvaluateHttp(Peer(Web), 80, Get("/"), null));

        var denyOnly = Policies("""{ "policies": [ { "name": "no-batch", "action": "deny", "rules": [ { "namespaces": ["batch"] } ] } ] }""");
        Assert.Equal(new AuthorizationDecision(true, AuthorizationPolicies.NoPolicy), denyOnly.EvaluateHttp(Peer(Web), 80, Get("/"), null));

        var allowOnly = Allow($$"""{ "principals": ["{{Web}}"] }""");
        Assert.Equal(new AuthorizationDecision(false, AuthorizationPolicies.NoAllowMatched), allowOnly.EvaluateHttp(Peer(Batch), 80, Get("/"), null));

        var defaultDeny = Policies("""{ "defaultDeny": true }""");
        Assert.False(defaultDeny.IsEmpty);
        Assert.Equal(new AuthorizationDecision(false, AuthorizationPolicies.NoAllowMatched), defaultDeny.EvaluateHttp(Peer(Web), 80, Get("/"), null));
        Assert.True(Policies("{}").IsEmpty);
    }

    [Fact]
    public void L4_AllowWithHttpConditionsNeverMatches_DenyWithHttpConditionsIgnoredAndWarned()
    {
        var allow = Allow($$"""{ "principals": ["{{Web}}"], "paths": ["/x"] }""");
        Assert.False(allow.EvaluateConnection(Peer(Web), 80).Allowed);
        Assert.True(Allow($$"""{ "principals": ["{{Web}}"], "ports": [80] }""").EvaluateConnection(Peer(Web), 80).Allowed);

        var deny = Policies("""{ "policies": [ { "name": "d", "action": "deny", "rules": [ { "methods": ["POST"] } ] } ] }""");
        Assert.True(deny.EvaluateConnection(Peer(Web), 80).Allowed);
        Assert.Contains(deny.Warnings, w => w.Contains("deny policy d", StringComparison.Ordinal));
        Assert.False(deny.EvaluateHttp(Peer(Web), 80, Head("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n"), null).Allowed);
    }

    [Fact]
    public void Evaluate_CommonCase_AllocatesNothing()
    {
        var p = Policies($$"""
            { "policies": [
                { "name": "no-batch", "action": "deny", "rules": [ { "namespaces": ["batch"] } ] },
                { "name": "web", "action": "allow", "rules": [ { "principals": ["spiffe://cluster.local/ns/web/*"], "methods": ["GET"], "paths": ["/api/*"], "headers": [ { "name": "x-env", "prefix": "prod" } ] } ] } ] }
            """);
        var head = Get("/api/users?id=1", extra: "x-env: prod\r\n");
        var peer = Peer(Web);
        Assert.True(p.EvaluateHttp(peer, 80, head, null).Allowed);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            p.EvaluateHttp(peer, 80, head, null);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Describe_NamesPolicyOrNoAllow()
    {
        Assert.Contains("denied by policy no-batch", new AuthorizationDecision(false, "no-batch").Describe("inbound"), StringComparison.Ordinal);
        Assert.Contains("no allow policy matched", new AuthorizationDecision(false, AuthorizationPolicies.NoAllowMatched).Describe("inbound"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("spiffe://td/ns/a/sa/b", "td", "a")]
    [InlineData("spiffe://td", "td", "")]
    [InlineData("https://x/ns/a", "", "")]
    public void Spiffe_Parts(string id, string td, string ns)
    {
        Assert.Equal(td, Spiffe.TrustDomain(id).ToString());
        Assert.Equal(ns, Spiffe.Namespace(id).ToString());
    }
}

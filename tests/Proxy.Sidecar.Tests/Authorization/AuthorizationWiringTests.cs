using System.Net;
using System.Net.Sockets;
using System.Text;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Core.Identity;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.App;
using Proxy.Sidecar.Tests.Grpc;
using Proxy.Tests.Jwt;

namespace Proxy.Sidecar.Tests.Authorization;

/// <summary>
/// Authorization policies and JWT authentication through the composed sidecar: an explicit HTTP listener that opts in,
/// peer identities set by a test hook (the TLS stage that sets them in production lands separately), real clients.
/// </summary>
public sealed class AuthorizationWiringTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private const string WebPeer = "spiffe://cluster.local/ns/web/sa/frontend";
    private const string BatchPeer = "spiffe://cluster.local/ns/batch/sa/jobs";
    private readonly List<IAsyncDisposable> _disposables = [];
    private readonly List<string> _files = [];
    private HttpTestApp _app = null!;

    // The identity the test hook gives the next accepted connection (null: none, like plaintext).
    private volatile string? _peer;

    public async Task InitializeAsync()
    {
        _app = await HttpTestApp.StartAsync("app");
        _disposables.Add(_app);
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }

        foreach (var f in _files)
        {
            File.Delete(f);
        }
    }

    private static AuthorizationConfig Policies(string json)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var errors = new List<string>();
        var config = AuthorizationConfigReader.Read(doc.RootElement, "authorization", errors);
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        return config!;
    }

    private const string MeshPolicies = """
        { "policies": [
            { "name": "no-batch", "action": "deny", "rules": [ { "namespaces": ["batch"] } ] },
            { "name": "web-frontend", "action": "allow", "rules": [ { "principals": ["spiffe://cluster.local/ns/web/*"] } ] } ] }
        """;

    private ProxyConfig Config(AuthorizationConfig authorization, ListenerConfig edge) => new()
    {
        OutboundListen = null,
        InboundListen = null,
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
        Services = [new ServiceConfig("app", [], [_app.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 }],
        Listeners = [edge],
        Authorization = authorization,
    };

    private static ListenerConfig Edge(bool authorization = true, JwtConfig? jwt = null, ListenerProtocol protocol = ListenerProtocol.Http)
        => new("edge", new IPEndPoint(IPAddress.Loopback, 0), "app") { Protocol = protocol, Authorization = authorization, Jwt = jwt };

    private async Task<SidecarHost> StartAsync(ProxyConfig config, ConfigSource? source = null)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_app.EndPoint), source)
        {
            ConnectionHookForTests = c =>
            {
                if (_peer is { } id)
                {
                    c.Features.Set<IPeerIdentityFeature>(new PeerIdentityFeature(id, PeerTransport.MutualTls));
                }
            },
        };
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static Uri Url(SidecarHost host, string path = "/") => new($"http://{host.AddressOf("edge")}{path}");

    /// <summary>A GET on a new connection (so the hook gives it the current <see cref="_peer"/>).</summary>
    private async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)> GetAsync(SidecarHost host, string? peer, string path = "/", string? token = null, params (string, string)[] headers)
    {
        _peer = peer;
        using var http = Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, path));
        if (token is not null)
        {
            request.Headers.TryAddWithoutValidation("authorization", "Bearer " + token);
        }

        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        var response = await http.SendAsync(request).WaitAsync(Timeout);
        var body = await response.Content.ReadAsStringAsync().WaitAsync(Timeout);
        return (response.StatusCode, body, response);
    }

    [Theory]
    [InlineData(PathNormalization.Base, "/public/../admin/users", 403)]
    [InlineData(PathNormalization.Base, "/public/%2e%2e/admin/users", 403)]
    [InlineData(PathNormalization.Base, "/%61dmin/users", 403)]
    [InlineData(PathNormalization.Base, "/admin//users", 403)]
    [InlineData(PathNormalization.MergeSlashes, "//admin/users", 403)]
    [InlineData(PathNormalization.Base, "/public/./page", 200)]
    // Without normalization the policy sees the raw path and the app (Kestrel removes dot segments) serves /admin:
    // the bypass that normalization closes (CVE-2021-31920 in Istio's words).
    [InlineData(PathNormalization.None, "/public/../admin/users", 200)]
    public async Task Http_DenyByPath_NotBypassedByDotSegmentsEncodingOrSlashes(PathNormalization mode, string path, int status)
    {
        var policies = Policies("""{ "policies": [ { "name": "no-admin", "action": "deny", "rules": [ { "paths": ["/admin/*"] } ] } ] }""");
        var host = await StartAsync(Config(policies, Edge()) with { Http = new HttpConfig { PathNormalization = mode } });
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var response = await reader.ReadToEndAsync().WaitAsync(Timeout);

        Assert.StartsWith($"HTTP/1.1 {status} ", response, StringComparison.Ordinal);
        if (status == 403)
        {
            Assert.Contains("denied by policy no-admin", response, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Http_DenyByPath_StrayPercentCannotFormADotSegmentTheAppDecodes()
    {
        // "%2%65" decoded once would be "%2e": the policy would see /public/%2e%2e/admin, the app (Kestrel decodes,
        // then removes dot segments) /admin. Normalized, the stray '%' is "%25" and the app sees a path under /public.
        var policies = Policies("""{ "policies": [ { "name": "no-admin", "action": "deny", "rules": [ { "paths": ["/admin/*"] } ] } ] }""");
        var host = await StartAsync(Config(policies, Edge()));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
        var stream = tcp.GetStream();
        await stream.WriteAsync("GET /public/%2%65%2%65/admin/users HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var response = await reader.ReadToEndAsync().WaitAsync(Timeout);

        Assert.StartsWith("HTTP/1.1 200 ", response, StringComparison.Ordinal);
        Assert.Contains("app GET /public/", response, StringComparison.Ordinal);
        Assert.DoesNotContain("GET /admin", response, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_DenyAndAllowByPeerIdentity_403NamesPolicy_MetricCounts()
    {
        var host = await StartAsync(Config(Policies(MeshPolicies), Edge()));

        var ok = await GetAsync(host, WebPeer);
        Assert.Equal(HttpStatusCode.OK, ok.Status);

        var denied = await GetAsync(host, BatchPeer);
        Assert.Equal(HttpStatusCode.Forbidden, denied.Status);
        Assert.Equal("policy_denied", Assert.Single(denied.Response.Headers.GetValues("x-proxy-error")));
        Assert.Contains("denied by policy no-batch", denied.Body, StringComparison.Ordinal);

        var anonymous = await GetAsync(host, null);
        Assert.Equal(HttpStatusCode.Forbidden, anonymous.Status);
        Assert.Contains("no allow policy matched", anonymous.Body, StringComparison.Ordinal);

        using var http = Client();
        var metrics = await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics")).WaitAsync(Timeout);
        Assert.True(metrics.Contains("proxy_authz_decisions_total", StringComparison.Ordinal), metrics);
        Assert.Contains("proxy_authz_decisions_total{listener=\"edge\",decision=\"deny\",policy=\"no-batch\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_authz_decisions_total{listener=\"edge\",decision=\"allow\",policy=\"web-frontend\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inbound_PoliciesApply_PortIsTheOriginalDestinationPort()
    {
        var policies = Policies($$"""
            { "policies": [ { "name": "app-port", "action": "allow", "rules": [ { "ports": [{{_app.EndPoint.Port}}], "namespaces": ["web"] } ] } ] }
            """);
        var host = await StartAsync(Config(policies, Edge(authorization: false)) with { InboundListen = new IPEndPoint(IPAddress.Loopback, 0) });
        async Task<HttpStatusCode> InboundAsync(string? peer)
        {
            _peer = peer;
            using var http = Client();
            using var response = await http.GetAsync(new Uri($"http://{host.AddressOf("inbound")}/")).WaitAsync(Timeout);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await InboundAsync(WebPeer));
        Assert.Equal(HttpStatusCode.Forbidden, await InboundAsync(BatchPeer));
        Assert.Equal(HttpStatusCode.Forbidden, await InboundAsync(null));
    }

    [Fact]
    public async Task Http2_StreamsCarryTheConnectionsPeerIdentity()
    {
        var host = await StartAsync(Config(Policies(MeshPolicies), Edge()));
        async Task<HttpResponseMessage> H2cAsync(string? peer)
        {
            _peer = peer;
            using var http = Client();
            using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/x")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            return await http.SendAsync(request).WaitAsync(Timeout);
        }

        using var ok = await H2cAsync(WebPeer);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(HttpVersion.Version20, ok.Version);
        using var denied = await H2cAsync(BatchPeer);
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Contains("no-batch", await denied.Content.ReadAsStringAsync().WaitAsync(Timeout), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_ListenerWithoutOptIn_NotChecked()
    {
        var host = await StartAsync(Config(Policies(MeshPolicies), Edge(authorization: false)));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, BatchPeer)).Status);
    }

    [Fact]
    public async Task Tcp_Denied_ConnectionClosedAtOnce()
    {
        var host = await StartAsync(Config(Policies(MeshPolicies), Edge(protocol: ListenerProtocol.Tcp)));
        var edge = (IPEndPoint)host.AddressOf("edge")!;

        _peer = BatchPeer;
        using (var denied = new TcpClient())
        {
            var buffer = new byte[256];
            var read = 0;
            try
            {
                // The reset may come before the connect is seen complete or before the write: either way nothing is
                // ever answered.
                await denied.ConnectAsync(edge).WaitAsync(Timeout);
                var stream = denied.GetStream();
                await stream.WriteAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
                read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
            }

            Assert.Equal(0, read);
        }

        _peer = WebPeer;
        using var allowed = new TcpClient();
        await allowed.ConnectAsync(edge).WaitAsync(Timeout);
        var s = allowed.GetStream();
        await s.WriteAsync("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(s);
        Assert.StartsWith("HTTP/1.1 200", await reader.ReadLineAsync().WaitAsync(Timeout), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_Denied_PermissionDeniedNamingPolicy()
    {
        await using var server = await GrpcTestServer.StartAsync();
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(UpstreamProtocol.Http2, server.EndPoint)],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName) with { Authorization = true }],
            Authorization = Policies("""{ "policies": [ { "name": "no-unary", "action": "deny", "rules": [ { "paths": ["/proxy.tests.echo.Echo/Unary"] } ] } ] }"""),
        };
        await using var setup = await GrpcPathSetup.StartSidecarAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);
        using var channel = setup.Channel();
        var client = new Proxy.Sidecar.Tests.Grpc.Echo.Echo.EchoClient(channel);
        using var call = client.UnaryAsync(new Proxy.Sidecar.Tests.Grpc.Echo.EchoRequest());
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains("denied by policy no-unary", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal("policy_denied", e.Trailers.GetValue("x-proxy-error"));
    }

    [Fact]
    public async Task Grpc_NoToken_UnauthenticatedJwtMissing()
    {
        using var issuer = new JwtTestIssuer("k1");
        await using var server = await GrpcTestServer.StartAsync();
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(UpstreamProtocol.Http2, server.EndPoint)],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName) with { Jwt = Jwt(TempFile(issuer.Jwks())) }],
        };
        await using var setup = await GrpcPathSetup.StartSidecarAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);
        using var channel = setup.Channel();
        var client = new Proxy.Sidecar.Tests.Grpc.Echo.Echo.EchoClient(channel);
        using var call = client.UnaryAsync(new Proxy.Sidecar.Tests.Grpc.Echo.EchoRequest());
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Equal("jwt_missing", e.Trailers.GetValue("x-proxy-error"));

        var headers = new Metadata { { "authorization", "Bearer " + issuer.Token("k1") } };
        using var ok = client.UnaryAsync(new Proxy.Sidecar.Tests.Grpc.Echo.EchoRequest(), headers);
        await ok.ResponseAsync.WaitAsync(Timeout);
    }

    // ---- JWT ------------------------------------------------------------------------------------

    private string TempFile(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"authz-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, text);
        _files.Add(path);
        return path;
    }

    private static JwtConfig Jwt(string jwks, bool required = true) => new()
    {
        Issuer = JwtTestIssuer.Issuer,
        Audiences = [JwtTestIssuer.Audience],
        Jwks = jwks,
        ForwardSubjectHeader = "x-user-id",
        Required = required,
    };

    private const string AdminPolicy = """
        { "policies": [ { "name": "no-debug", "action": "deny", "rules": [ { "paths": ["/debug/*"] } ] },
                        { "name": "admin-role", "action": "allow", "rules": [ { "paths": ["/admin/*"], "claims": { "role": ["admin"] } }, { "paths": ["/public/*"] } ] } ] }
        """;

    [Fact]
    public async Task Jwt_FileJwks_AcceptedRefusedAndClaimPolicies()
    {
        using var issuer = new JwtTestIssuer("k1");
        var host = await StartAsync(Config(Policies(AdminPolicy), Edge(jwt: Jwt(TempFile(issuer.Jwks())))));

        // Missing: 401 jwt_missing with a Bearer challenge.
        var missing = await GetAsync(host, null, "/public/x");
        Assert.Equal(HttpStatusCode.Unauthorized, missing.Status);
        Assert.Equal("jwt_missing", Assert.Single(missing.Response.Headers.GetValues("x-proxy-error")));
        Assert.StartsWith("Bearer error=\"invalid_token\", error_description=", missing.Response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);

        // Valid: forwarded with the subject header; a forged copy is dropped.
        var ok = await GetAsync(host, null, "/public/x", issuer.Token("k1", sub: "alice"), ("x-user-id", "mallory"));
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Contains("x-user-id: alice\n", ok.Body, StringComparison.Ordinal);
        Assert.DoesNotContain("mallory", ok.Body, StringComparison.Ordinal);

        foreach (var (token, reason) in new[]
        {
            (issuer.Token("k1", expiresIn: TimeSpan.FromMinutes(-5)), "expired"),
            (issuer.Token("k1", issuer: "https://evil.test"), "issuer"),
            (issuer.Token("k1", audience: "other"), "audience"),
            (issuer.Token("k1") + "x", "signature"),
            ("garbage", "malformed"),
        })
        {
            var refused = await GetAsync(host, null, "/public/x", token);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.Status);
            Assert.Equal("jwt_invalid", Assert.Single(refused.Response.Headers.GetValues("x-proxy-error")));
            Assert.Contains(reason, refused.Body, StringComparison.Ordinal);
        }

        // Claims: role=admin may use /admin, role=user may not.
        var admin = await GetAsync(host, null, "/admin/panel", issuer.Token("k1", claims: new Dictionary<string, object> { ["role"] = new[] { "ops", "admin" } }));
        Assert.Equal(HttpStatusCode.OK, admin.Status);
        var user = await GetAsync(host, null, "/admin/panel", issuer.Token("k1", claims: new Dictionary<string, object> { ["role"] = "user" }));
        Assert.Equal(HttpStatusCode.Forbidden, user.Status);
        Assert.Contains("no allow policy matched", user.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Jwt_KeepAliveConnection_CachedTokenReusedOnlyWhenIdentical()
    {
        using var issuer = new JwtTestIssuer("k1");
        var host = await StartAsync(Config(Policies(AdminPolicy), Edge(jwt: Jwt(TempFile(issuer.Jwks())))));
        var alice = issuer.Token("k1", sub: "alice");
        var expired = issuer.Token("k1", sub: "bob", expiresIn: TimeSpan.FromMinutes(-5));
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = 1 }) { Timeout = Timeout };
        async Task<(HttpStatusCode, string)> SendAsync(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/public/x"));
            request.Headers.TryAddWithoutValidation("authorization", "Bearer " + token);
            using var response = await http.SendAsync(request).WaitAsync(Timeout);
            return (response.StatusCode, await response.Content.ReadAsStringAsync().WaitAsync(Timeout));
        }

        for (var i = 0; i < 3; i++)
        {
            var (status, body) = await SendAsync(alice);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Contains("x-user-id: alice\n", body, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(expired)).Item1);
            Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(alice + "x")).Item1);
        }
    }

    [Fact]
    public async Task Jwt_NotRequired_NoTokenPassesWithoutClaims()
    {
        using var issuer = new JwtTestIssuer("k1");
        var host = await StartAsync(Config(Policies(AdminPolicy), Edge(jwt: Jwt(TempFile(issuer.Jwks()), required: false))));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, null, "/public/x", null, ("x-user-id", "mallory"))).Status);
        var admin = await GetAsync(host, null, "/admin/x");
        Assert.Equal(HttpStatusCode.Forbidden, admin.Status);
        Assert.Contains("no allow policy matched", admin.Body, StringComparison.Ordinal);
        var debug = await GetAsync(host, null, "/debug/x");
        Assert.Contains("denied by policy no-debug", debug.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Jwt_RouteJwt_OnlyThatRouteRequiresToken()
    {
        using var issuer = new JwtTestIssuer("k1");
        var jwks = TempFile(issuer.Jwks());
        var edge = Edge(authorization: false) with
        {
            Routes =
            [
                new RouteConfig { Name = "admin", Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/admin") }, Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("app")] }, Jwt = Jwt(jwks) },
                new RouteConfig { Name = "rest", Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("app")] } },
            ],
        };
        var host = await StartAsync(Config(new AuthorizationConfig(), edge));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, null, "/open")).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(host, null, "/admin")).Status);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, null, "/admin", issuer.Token("k1"))).Status);
    }

    [Fact]
    public async Task Jwt_UrlJwks_KeyRotationFetchesNewKid()
    {
        using var issuer = new JwtTestIssuer("k1", "k2");
        await using var jwks = await JwksServer.StartAsync(issuer.Jwks("k1"));
        var host = await StartAsync(Config(new AuthorizationConfig(), Edge(authorization: false, jwt: Jwt(jwks.Url))));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, null, "/", issuer.Token("k1"))).Status);
        Assert.Equal(1, jwks.Fetches);

        // The issuer rotates to k2: the first k2 token makes the sidecar fetch the JWKS again.
        jwks.Body = issuer.Jwks("k2");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, null, "/", issuer.Token("k2"))).Status);
        Assert.Equal(2, jwks.Fetches);
        var old = await GetAsync(host, null, "/", issuer.Token("k1"));
        Assert.Equal(HttpStatusCode.Unauthorized, old.Status);
        Assert.Contains("unknown key", old.Body, StringComparison.Ordinal);
    }

    // ---- reload ---------------------------------------------------------------------------------

    [Fact]
    public async Task Reload_RewrittenPolicies_NextRequestSeesThem_BadFileKeepsOld()
    {
        string File(string policies) => $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "127.0.0.1:0",
              "services": [ { "name": "app", "endpoints": ["{{_app.EndPoint}}"], "upstreamProtocol": "http1" } ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "service": "app", "protocol": "http", "authorization": true } ],
              "authorization": {{policies}} }
            """;
        var path = TempFile(File("""{ "policies": [] }"""));
        var loaded = ConfigLoader.Load(new Dictionary<string, string>(), System.IO.File.ReadAllText(path));
        Assert.True(loaded.Ok, string.Join("\n", loaded.Errors));
        var host = await StartAsync(loaded.Config!, new ConfigSource(path, new Dictionary<string, string>()));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, BatchPeer)).Status);

        async Task<ReloadOutcome> RewriteAsync(string text)
        {
            var reloaded = new TaskCompletionSource<ReloadOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnReloaded(ReloadOutcome o) => reloaded.TrySetResult(o);
            host.Reloader!.Reloaded += OnReloaded;
            try
            {
                await System.IO.File.WriteAllTextAsync(path, text);
                return await reloaded.Task.WaitAsync(Timeout);
            }
            finally
            {
                host.Reloader.Reloaded -= OnReloaded;
            }
        }

        Assert.Equal(ReloadOutcome.Applied, await RewriteAsync(File(MeshPolicies)));
        var denied = await GetAsync(host, BatchPeer);
        Assert.Equal(HttpStatusCode.Forbidden, denied.Status);
        Assert.Contains("no-batch", denied.Body, StringComparison.Ordinal);

        Assert.Equal(ReloadOutcome.Rejected, await RewriteAsync(File("""{ "policies": [ { "name": "x", "action": "perhaps", "rules": [ {} ] } ] }""")));
        Assert.Equal(HttpStatusCode.Forbidden, (await GetAsync(host, BatchPeer)).Status);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host, WebPeer)).Status);
    }

    /// <summary>A loopback JWKS endpoint (plain http on 127.0.0.1: the config allows http only for loopback) whose body can change.</summary>
    private sealed class JwksServer : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _fetches;

        private JwksServer(WebApplication app, string body)
        {
            _app = app;
            Body = body;
        }

        public volatile string Body;

        public string Url { get; private set; } = "";

        public int Fetches => Volatile.Read(ref _fetches);

        public static async Task<JwksServer> StartAsync(string body)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var server = new JwksServer(app, body);
            app.Run(async context =>
            {
                Interlocked.Increment(ref server._fetches);
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(server.Body, Encoding.UTF8);
            });
            await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            server.Url = new Uri(new Uri(address), "/jwks").ToString();
            return server;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
            await _app.DisposeAsync();
        }
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.App;
using Proxy.Tls.Ca;
using Proxy.Tls.Identity;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// Automatic mTLS between two sidecars (issue 5 part 4), in-process on loopback: sidecar A (identity
/// <c>ns/web/sa/frontend</c>) in front of the clients, sidecar B (identity <c>ns/shop/sa/app</c>) in front of the apps.
/// A's services are meshed and point at B's mesh listeners (explicit, strict or permissive) and at B's inbound capture
/// listener (original destination faked as the HTTP/1.1 app, its port strict by <c>mesh.ports</c>). Neither the
/// clients nor the apps know about TLS. Refusals are checked with raw TLS clients offering the mesh ALPN.
/// </summary>
public sealed class MeshMtlsTests : IAsyncLifetime
{
    private const string AppIdentity = "spiffe://cluster.local/ns/shop/sa/app";
    private const string FrontendIdentity = "spiffe://cluster.local/ns/web/sa/frontend";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    // The CA's validity starts two days back, so an identity issued one day back is expired but not older than the CA.
    private readonly MeshTestPki _pki = new(time: new ShiftedTime(TimeSpan.FromDays(-2)));
    private HttpTestApp _app = null!;
    private HttpTestApp _app2 = null!;
    private TcpListener _echo = null!;
    private Task _echoLoop = Task.CompletedTask;
    private SidecarHost _b = null!;
    private SidecarHost _a = null!;

    public async Task InitializeAsync()
    {
        _app = await HttpTestApp.StartAsync("app");
        _app2 = await HttpTestApp.StartAsync("app2", http2Only: true);
        _echo = new TcpListener(IPAddress.Loopback, 0);
        _echo.Start();
        _echoLoop = EchoLoopAsync(_echo);

        using var policies = System.Text.Json.JsonDocument.Parse("""
            { "policies": [ { "name": "no-frontend-admin", "action": "deny", "rules": [ { "namespaces": ["web"], "paths": ["/admin*"] } ] } ] }
            """);
        var errors = new List<string>();
        var authorization = AuthorizationConfigReader.Read(policies.RootElement, "authorization", errors)!;
        Assert.Empty(errors);
        var any = new IPEndPoint(IPAddress.Loopback, 0);
        var bConfig = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = any,
            AdminListen = any,
            Mesh = _pki.MeshFor(AppIdentity) with { Ports = new Dictionary<int, MeshMode> { [_app.EndPoint.Port] = MeshMode.Strict } },
            Authorization = authorization,
            Http = new HttpConfig { AccessLog = Path.Combine(_pki.DirectoryPath, "b-access.log") },
            Services =
            [
                new ServiceConfig("app", [], [_app.EndPoint]),
                new ServiceConfig("app2", [], [_app2.EndPoint]),
                new ServiceConfig("echo", [], [(IPEndPoint)_echo.LocalEndpoint]),
            ],
            Listeners =
            [
                new ListenerConfig("in-h1", any, "app") { Protocol = ListenerProtocol.Http, Mesh = MeshMode.Strict },
                new ListenerConfig("in-h2", any, "app2") { Protocol = ListenerProtocol.Http, Mesh = MeshMode.Strict },
                new ListenerConfig("in-tcp", any, "echo") { Protocol = ListenerProtocol.Tcp, Mesh = MeshMode.Strict },
                new ListenerConfig("in-open", any, "app") { Protocol = ListenerProtocol.Http, Mesh = MeshMode.Permissive },
                new ListenerConfig("in-routed", any, "") { Protocol = ListenerProtocol.Http, Mesh = MeshMode.Strict, Routes = RoutesByCaller() },
            ],
        };
        _b = new SidecarHost(bConfig, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_app.EndPoint));
        await _b.StartAsync(CancellationToken.None).WaitAsync(Timeout);

        ServiceConfig Meshed(string name, string listener, string identity = AppIdentity)
            => new(name, [], [Address(_b, listener)]) { Mesh = new ServiceMeshConfig { Identity = identity } };
        var aConfig = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = any,
            Mesh = _pki.MeshFor(FrontendIdentity),
            Services =
            [
                Meshed("b-h1", "in-h1"),
                Meshed("b-h2", "in-h2"),
                Meshed("b-tcp", "in-tcp"),
                Meshed("b-open", "in-open", "spiffe://cluster.local/ns/shop/*"),
                Meshed("b-inbound", "inbound"),
                Meshed("b-wrong", "in-h1", "spiffe://cluster.local/ns/shop/sa/other"),
                Meshed("b-routed", "in-routed"),
                new ServiceConfig("b-plain", [], [Address(_b, "in-h1")]),
            ],
            Listeners =
            [
                new ListenerConfig("out-h1", any, "b-h1") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-h2", any, "b-h2") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-tcp", any, "b-tcp") { Protocol = ListenerProtocol.Tcp },
                new ListenerConfig("out-open", any, "b-open") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-inbound", any, "b-inbound") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-wrong", any, "b-wrong") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-routed", any, "b-routed") { Protocol = ListenerProtocol.Http },
                new ListenerConfig("out-plain", any, "b-plain") { Protocol = ListenerProtocol.Http },
            ],
        };
        _a = new SidecarHost(aConfig, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_app.EndPoint));
        await _a.StartAsync(CancellationToken.None).WaitAsync(Timeout);
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        _echo.Stop();
        await _echoLoop.WaitAsync(Timeout);
        await _app.DisposeAsync();
        await _app2.DisposeAsync();
        _pki.Dispose();
    }

    // ---- the inner protocols ----

    [Fact]
    public async Task Http11Client_ReachesTheAppAsHttp11_OverMeshMtls_IdentityCounted()
    {
        using var http = Client();
        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync(Url(_a, "out-h1", $"/hello/{i}"));
            var body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains($"app GET /hello/{i}", body, StringComparison.Ordinal);
            Assert.Equal("HTTP/1.1", Header(response, "x-protocol"));

            // The sidecars' own marker of an upgraded request never reaches the app.
            Assert.DoesNotContain("proxy-mesh", body, StringComparison.Ordinal);
        }

        var metrics = await MetricsAsync(_b);
        Assert.Contains($"proxy_tls_peer_connections_total{{listener=\"in-h1\",peer=\"{FrontendIdentity}\",transport=\"mtls\"}}", metrics, StringComparison.Ordinal);

        // The inbound side's access log names the caller and how it came.
        var line = await AccessLogLineAsync("/hello/2");
        Assert.Contains($"\"peer\":\"{FrontendIdentity}\"", line, StringComparison.Ordinal);
        Assert.Contains("\"transport\":\"mtls\"", line, StringComparison.Ordinal);
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"in-h1\",mode=\"strict\",result=\"mtls\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_tls_handshakes_total{listener=\"\",service=\"b-h1\",role=\"client\",result=\"ok\"} 1", await MetricsAsync(_a), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http11Client_PostWithBody_ArrivesWhole()
    {
        using var http = Client();
        var payload = new string('x', 200_000);
        using var response = await http.PostAsync(Url(_a, "out-h1", "/upload"), new StringContent(payload));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("app POST /upload", body, StringComparison.Ordinal);
        Assert.Contains("content-length: 200000", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Client_ReachesTheHttp2AppAsHttp2()
    {
        using var http = Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(_a, "out-h2", "/two")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("app2 GET /two", body, StringComparison.Ordinal);
        Assert.Equal("HTTP/2", Header(response, "x-protocol"));
    }

    [Fact]
    public async Task OpaqueTcp_BytesEchoedThroughMeshMtls()
    {
        using var client = new TcpClient();
        await client.ConnectAsync((IPEndPoint)_a.AddressOf("out-tcp")!).WaitAsync(Timeout);
        var stream = client.GetStream();
        var sent = new byte[100_000];
        new Random(7).NextBytes(sent);
        var writing = stream.WriteAsync(sent).AsTask();
        var received = new byte[sent.Length];
        await stream.ReadExactlyAsync(received).AsTask().WaitAsync(Timeout);
        await writing.WaitAsync(Timeout);
        Assert.Equal(sent, received);
        Assert.Contains($"proxy_tls_peer_connections_total{{listener=\"in-tcp\",peer=\"{FrontendIdentity}\",transport=\"mtls\"}} 1", await MetricsAsync(_b), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RawMeshClient_Http11Alpn_ServedByTheInboundSide()
    {
        var (certificate, key) = _pki.IssueFiles("spiffe://cluster.local/ns/web/sa/tool");
        using var identity = X509Certificate2.CreateFromPemFile(certificate, key);
        var response = await RawMeshRequestAsync(_b, "in-h1", "proxy-mesh/http1.1", identity);
        Assert.StartsWith("HTTP/1.1 200", response, StringComparison.Ordinal);
        Assert.Contains("app GET /raw", response, StringComparison.Ordinal);
    }

    // ---- the inbound capture listener: per-port strict mode, policies on the peer identity ----

    [Fact]
    public async Task InboundCapture_MeshServed_PolicySeesThePeerIdentity()
    {
        using var http = Client();
        using (var ok = await http.GetAsync(Url(_a, "out-inbound", "/orders")))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Contains("app GET /orders", await ok.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var denied = await http.GetAsync(Url(_a, "out-inbound", "/admin/users"));
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Equal("policy_denied", Header(denied, "x-proxy-error"));
        Assert.Contains("no-frontend-admin", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task InboundCapture_PortInStrictMode_PlaintextRefused()
    {
        using var http = Client();
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(Url(_b, "inbound", "/plain")));
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"inbound\",mode=\"strict\",result=\"refused\"}", await MetricsAsync(_b), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Routes_MatchTheCallersIdentity()
    {
        using var http = Client();
        using (var frontend = await http.GetAsync(Url(_a, "out-routed", "/r")))
        {
            Assert.Equal(HttpStatusCode.OK, frontend.StatusCode);
            Assert.Contains("x-caller: web", await frontend.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var (certificate, key) = _pki.IssueFiles("spiffe://cluster.local/ns/batch/sa/jobs");
        using var batch = X509Certificate2.CreateFromPemFile(certificate, key);
        var other = await RawMeshRequestAsync(_b, "in-routed", "proxy-mesh/http1.1", batch);
        Assert.StartsWith("HTTP/1.1 200", other, StringComparison.Ordinal);
        Assert.Contains("x-caller: other", other, StringComparison.Ordinal);
    }

    private static RouteConfig[] RoutesByCaller()
    {
        static RouteConfig To(string name, string caller, params string[] sources) => new()
        {
            Name = name,
            Match = new RouteMatchConfig { SourcePrincipals = sources },
            Action = new RouteActionConfig
            {
                Destinations = [new WeightedDestinationConfig("app")],
                RequestHeaders = new HeaderMutationsConfig { Set = [new("x-caller", caller)] },
            },
        };
        return [To("from-web", "web", "spiffe://cluster.local/ns/web/*"), To("others", "other")];
    }

    // ---- modes ----

    [Fact]
    public async Task StrictListener_PlaintextFromANonMeshedService_Refused502()
    {
        using var http = Client();
        using var response = await http.GetAsync(Url(_a, "out-plain", "/x"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.StartsWith("upstream_", Header(response, "x-proxy-error"), StringComparison.Ordinal);
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"in-h1\",mode=\"strict\",result=\"refused\"}", await MetricsAsync(_b), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PermissiveListener_PlaintextAndMeshBothServed()
    {
        using var http = Client();
        using (var plain = await http.GetAsync(Url(_b, "in-open", "/plain")))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }

        using (var mesh = await http.GetAsync(Url(_a, "out-open", "/meshed")))
        {
            Assert.Equal(HttpStatusCode.OK, mesh.StatusCode);
            Assert.Contains("app GET /meshed", await mesh.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var metrics = await MetricsAsync(_b);
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"in-open\",mode=\"permissive\",result=\"plaintext\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"in-open\",mode=\"permissive\",result=\"mtls\"} 1", metrics, StringComparison.Ordinal);
    }

    // ---- refused peers ----

    [Fact]
    public async Task WrongServerIdentity_502UpstreamTlsNamingTheIdentities()
    {
        using var http = Client();
        using var response = await http.GetAsync(Url(_a, "out-wrong", "/x"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls", Header(response, "x-proxy-error"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains(AppIdentity, body, StringComparison.Ordinal);
        Assert.Contains("spiffe://cluster.local/ns/shop/sa/other", body, StringComparison.Ordinal);
        Assert.Contains("result=\"wrong_identity\"", await MetricsAsync(_a), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientWithoutCertificate_Refused()
    {
        Assert.Null(await TryRawMeshRequestAsync(_b, "in-h1", "proxy-mesh/http1.1", null));
        await AssertHandshakeResultAsync("in-h1", "no_certificate");
    }

    [Fact]
    public async Task ClientFromAnotherCa_Refused()
    {
        using var other = MeshCertificateAuthority.CreateRoot("cluster.local", TimeSpan.FromDays(1));
        using var foreign = other.Issue(SpiffeId.Parse(FrontendIdentity), [], TimeSpan.FromHours(1));
        Assert.Null(await TryRawMeshRequestAsync(_b, "in-h1", "proxy-mesh/http1.1", foreign));
        await AssertHandshakeResultAsync("in-h1", "untrusted_issuer");
    }

    [Fact]
    public async Task ClientWithExpiredCertificate_Refused()
    {
        var (certificate, key) = _pki.IssueFiles(FrontendIdentity, new ShiftedTime(TimeSpan.FromDays(-1)));
        using var expired = X509Certificate2.CreateFromPemFile(certificate, key);
        Assert.True(expired.NotAfter.ToUniversalTime() < DateTime.UtcNow);
        Assert.Null(await TryRawMeshRequestAsync(_b, "in-h1", "proxy-mesh/http1.1", expired));
        await AssertHandshakeResultAsync("in-h1", "expired");
    }

    [Fact]
    public async Task TlsWithoutMeshAlpn_RefusedByStrictListener()
    {
        var (certificate, key) = _pki.IssueFiles(FrontendIdentity);
        using var identity = X509Certificate2.CreateFromPemFile(certificate, key);
        Assert.Null(await TryRawMeshRequestAsync(_b, "in-h1", "http/1.1", identity));
        Assert.Contains("proxy_mesh_inbound_connections_total{listener=\"in-h1\",mode=\"strict\",result=\"refused\"}", await MetricsAsync(_b), StringComparison.Ordinal);
    }

    // ---- helpers ----

    /// <summary>The first line of B's access log that mentions <paramref name="path"/> (the log is written asynchronously).</summary>
    private async Task<string> AccessLogLineAsync(string path)
    {
        var file = Path.Combine(_pki.DirectoryPath, "b-access.log");
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            if (File.Exists(file))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream);
                var text = await reader.ReadToEndAsync();
                var line = text.Split('\n').FirstOrDefault(l => l.Contains(path, StringComparison.Ordinal));
                if (line is not null)
                {
                    return line;
                }
            }

            Assert.True(DateTime.UtcNow < deadline, $"no access log line for {path} within {Timeout}");
            await Task.Delay(20);
        }
    }

    private async Task AssertHandshakeResultAsync(string listener, string result)
        => Assert.Contains($"proxy_tls_handshakes_total{{listener=\"{listener}\",service=\"\",role=\"server\",result=\"{result}\"}}", await MetricsAsync(_b), StringComparison.Ordinal);

    private async Task<string> RawMeshRequestAsync(SidecarHost host, string listener, string alpn, X509Certificate2? certificate)
        => await TryRawMeshRequestAsync(host, listener, alpn, certificate) ?? throw new Xunit.Sdk.XunitException("no response over mesh TLS");

    /// <summary>A GET over TLS with <paramref name="alpn"/> and <paramref name="certificate"/>; null when the server refused (handshake failed or closed without a response).</summary>
    private async Task<string?> TryRawMeshRequestAsync(SidecarHost host, string listener, string alpn, X509Certificate2? certificate)
    {
        var trust = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        trust.CustomTrustStore.Add(_pki.Ca.Certificate);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)host.AddressOf(listener)!).WaitAsync(Timeout);
        await using var tls = new SslStream(tcp.GetStream());
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "mesh",
                ApplicationProtocols = [new SslApplicationProtocol(alpn)],
                ClientCertificates = certificate is null ? null : [certificate],
                // The sidecar's workload certificate carries no DNS name (its identity is the URI SAN): chain only.
                CertificateChainPolicy = trust,
                RemoteCertificateValidationCallback = static (_, _, _, errors) => (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None,
            }).WaitAsync(Timeout);
            await tls.WriteAsync("GET /raw HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
            using var reader = new StreamReader(tls, Encoding.ASCII);
            var text = await reader.ReadToEndAsync().WaitAsync(Timeout);
            return text.Length == 0 ? null : text;
        }
        catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException or SocketException)
        {
            return null;
        }
    }

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static IPEndPoint Address(SidecarHost host, string listener) => (IPEndPoint)host.AddressOf(listener)!;

    private static Uri Url(SidecarHost host, string listener, string path) => new($"http://{host.AddressOf(listener)}{path}");

    private static string? Header(HttpResponseMessage response, string name)
        => response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;

    private static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = Client();
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
    }

    private static async Task EchoLoopAsync(TcpListener listener)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                using (socket)
                {
                    var buffer = new byte[16 * 1024];
                    try
                    {
                        int n;
                        while ((n = await socket.ReceiveAsync(buffer).WaitAsync(Timeout)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, n)).AsTask().WaitAsync(Timeout);
                        }
                    }
                    catch (Exception e) when (e is SocketException or TimeoutException or ObjectDisposedException)
                    {
                    }
                }
            });
        }
    }

    /// <summary>The clock moved by a fixed offset (for certificates issued in the past).</summary>
    private sealed class ShiftedTime(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + offset;
    }
}

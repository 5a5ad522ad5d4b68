using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.App;
using Proxy.Tls.Ca;
using Proxy.Tls.Identity;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// Authorization by the identity the TLS stage verified (no test hook): a listener terminating mutual TLS with
/// workload certificates from a mesh CA (<c>sidecar ca</c>'s code), its policies allowing one namespace's workloads and
/// denying another's. The client certificate's SPIFFE ID is what the policy sees.
/// </summary>
public sealed class MeshTlsAuthorizationTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly MeshCertificateAuthority _mesh = MeshCertificateAuthority.CreateRoot("cluster.local", TimeSpan.FromDays(1));
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proxy-mesh-authz-");
    private HttpTestApp _app = null!;
    private SidecarHost _host = null!;

    public async Task InitializeAsync()
    {
        _app = await HttpTestApp.StartAsync("app");
        var server = _mesh.Issue(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/app"), ["localhost"], TimeSpan.FromHours(1));
        var certPath = Write("app.crt", _mesh.WorkloadChainPem(server));
        var keyPath = Write("app.key", MeshCertificateAuthority.PrivateKeyPem(server));
        var caPath = Write("ca.crt", _mesh.Certificate.ExportCertificatePem());
        using var policies = System.Text.Json.JsonDocument.Parse("""
            { "policies": [
                { "name": "no-batch", "action": "deny", "rules": [ { "namespaces": ["batch"] } ] },
                { "name": "web-only", "action": "allow", "rules": [ { "principals": ["spiffe://cluster.local/ns/web/*"] } ] } ] }
            """);
        var errors = new List<string>();
        var authorization = AuthorizationConfigReader.Read(policies.RootElement, "authorization", errors);
        Assert.Empty(errors);
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Services = [new ServiceConfig("app", [], [_app.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 }],
            Listeners =
            [
                new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "app")
                {
                    Protocol = ListenerProtocol.Http,
                    Authorization = true,
                    Tls = new ListenerTlsConfig(certPath, keyPath) { Alpn = ["h2", "http/1.1"], ClientCertificate = TlsClientCertificateMode.Required, CaPath = caPath },
                },
            ],
            Authorization = authorization!,
        };
        _host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_app.EndPoint));
        await _host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _app.DisposeAsync();
        _dir.Delete(recursive: true);
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("2.0")]
    public async Task AllowedWorkload_ServedOverMutualTls(string version)
    {
        var (status, body, _) = await GetAsync("spiffe://cluster.local/ns/web/sa/frontend", Version.Parse(version));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("app GET /mesh", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PeerIdentity_CountedByListenerPeerAndTransport()
    {
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("spiffe://cluster.local/ns/web/sa/frontend", HttpVersion.Version11)).Status);
        using var http = new HttpClient { Timeout = Timeout };
        var metrics = await http.GetStringAsync(new Uri($"http://{_host.AddressOf("admin")}/metrics"));
        Assert.Contains(
            "proxy_tls_peer_connections_total{listener=\"edge\",peer=\"spiffe://cluster.local/ns/web/sa/frontend\",transport=\"mtls\"} 1",
            metrics,
            StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeniedNamespace_403NamingThePolicy()
    {
        var (status, body, error) = await GetAsync("spiffe://cluster.local/ns/batch/sa/jobs", HttpVersion.Version11);
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Equal("policy_denied", error);
        Assert.Contains("no-batch", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WorkloadMatchingNoAllowPolicy_403()
    {
        var (status, body, error) = await GetAsync("spiffe://cluster.local/ns/shop/sa/cart", HttpVersion.Version11);
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Equal("policy_denied", error);
        Assert.DoesNotContain("app GET", body, StringComparison.Ordinal);
    }

    private async Task<(HttpStatusCode Status, string Body, string? Error)> GetAsync(string identity, Version version)
    {
        var clientCert = _mesh.Issue(SpiffeId.Parse(identity), [], TimeSpan.FromHours(1));
        var trust = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        trust.CustomTrustStore.Add(_mesh.Certificate);
        using var http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = trust, ClientCertificates = [clientCert] },
        }) { Timeout = Timeout };
        var port = ((IPEndPoint)_host.AddressOf("edge")!).Port;
        using var request = new HttpRequestMessage(HttpMethod.Get, $"https://localhost:{port}/mesh") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await http.SendAsync(request);
        Assert.Equal(version, response.Version);
        var error = response.Headers.TryGetValues("x-proxy-error", out var values) ? values.Single() : null;
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), error);
    }

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, content);
        return path;
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// TLS origination end to end: a plaintext HTTP client dials an explicit listener; the service's <c>tls</c> config makes
/// the proxy speak TLS (ALPN by upstream protocol) to an HTTPS Kestrel app. Failures come back as proxy-made 502
/// <c>upstream_tls</c> that say why.
/// </summary>
public sealed class TlsOriginationTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TlsTestCertificates _certs = new();
    private readonly List<IAsyncDisposable> _disposables = [];
    private TlsUpstreamApp _app = null!;
    private string _caPath = "";

    public async Task InitializeAsync()
    {
        _app = await TlsUpstreamApp.StartAsync("secure", _certs.Server("backend.example"), askClientCertificate: true);
        _caPath = _certs.WriteCaPem();
    }

    public async Task DisposeAsync()
    {
        foreach (var d in _disposables)
        {
            await d.DisposeAsync();
        }

        await _app.DisposeAsync();
        _certs.Dispose();
    }

    private Task<SidecarHost> StartAsync(TimeSpan? handshakeTimeout = null, params ServiceConfig[] services)
        => StartAsync(ListenerProtocol.Http, handshakeTimeout, services);

    private async Task<SidecarHost> StartAsync(ListenerProtocol protocol, TimeSpan? handshakeTimeout, params ServiceConfig[] services)
    {
        var listeners = services.Select((s, i) => new ListenerConfig($"l{i}", new IPEndPoint(IPAddress.Loopback, 0), s.Name) { Protocol = protocol }).ToArray();
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Services = services,
            Listeners = listeners,
            Tls = new TlsConfig { HandshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(10) },
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_app.EndPoint));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private ServiceConfig Secure(UpstreamTlsConfig tls, UpstreamProtocol protocol = UpstreamProtocol.Http1, IPEndPoint? endpoint = null, string name = "secure")
        => new(name, [], [endpoint ?? _app.EndPoint]) { Tls = tls, UpstreamProtocol = protocol };

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static Uri Url(SidecarHost host, string listener, string path) => new($"http://{host.AddressOf(listener)}{path}");

    [Fact]
    public async Task Http1Service_WithTls_RequestArrivesOverTls()
    {
        var host = await StartAsync(null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/one"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("HTTP/1.1", response.Headers.GetValues("x-protocol").Single());
        Assert.Contains("secure GET /one", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Pooled: a second request reuses the TLS connection (no second handshake counted).
        using var again = await http.GetAsync(Url(host, "l0", "/two"));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        using var admin = Client();
        var metrics = await admin.GetStringAsync(Url(host, "admin", "/metrics"));
        Assert.Contains("proxy_tls_handshakes_total{listener=\"\",service=\"secure\",role=\"client\",result=\"ok\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Service_WithTls_AlpnH2AndStreamsArrive()
    {
        var host = await StartAsync(null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath }, UpstreamProtocol.Http2));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/h2"));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        Assert.Equal("HTTP/2", response.Headers.GetValues("x-protocol").Single());
        Assert.Contains("secure GET /h2", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Service_WithClientCertificate_PresentsItToTheEndpoint()
    {
        var (cert, key) = _certs.WritePem(_certs.Client("sidecar-a"));
        var host = await StartAsync(null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath, CertificatePath = cert, KeyPath = key }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/mtls"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("CN=sidecar-a", response.Headers.GetValues("x-client-cert").Single());
    }

    [Fact]
    public async Task UntrustedEndpointCertificate_502UpstreamTlsSaysNotTrusted()
    {
        using var other = new TlsTestCertificates("Other CA");
        var otherCa = other.WriteCaPem();
        var host = await StartAsync(null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = otherCa }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls", response.Headers.GetValues("x-proxy-error").Single());
        Assert.Contains($"the TLS handshake with upstream {_app.EndPoint} of service secure failed: certificate not trusted", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NameMismatch_502UpstreamTlsSaysNameMismatch()
    {
        var host = await StartAsync(null, Secure(new UpstreamTlsConfig { Sni = "wrong.example", CaPath = _caPath }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls", response.Headers.GetValues("x-proxy-error").Single());
        Assert.Contains("name mismatch", body, StringComparison.Ordinal);
        Assert.Contains("wrong.example", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EndpointAcceptsAndSaysNothing_502UpstreamTlsAfterTheHandshakeTimeout()
    {
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        silent.Listen(16); // the kernel completes the TCP handshake; nobody ever reads or writes
        var host = await StartAsync(TimeSpan.FromMilliseconds(300), Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath }, endpoint: (IPEndPoint)silent.LocalEndPoint!));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_tls", response.Headers.GetValues("x-proxy-error").Single());
        Assert.Contains("no complete handshake within 300 ms", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TcpListener_ServiceWithTls_PlainBytesGoOutEncrypted()
    {
        // Opaque TCP: the client speaks plain HTTP/1.1 to a tcp listener; the proxy originates TLS to the HTTPS app.
        var host = await StartAsync(ListenerProtocol.Tcp, null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "l0", "/opaque"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("secure GET /opaque", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TcpListener_UntrustedEndpoint_ClientResetAndCountedAsTls()
    {
        using var other = new TlsTestCertificates("Other CA");
        var host = await StartAsync(ListenerProtocol.Tcp, null, Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = other.WriteCaPem() }));
        using var http = Client();
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(Url(host, "l0", "/opaque")));
        var metrics = await MetricsWhenAsync(host, static m => m.Contains("cause=\"tls\"", StringComparison.Ordinal));

        Assert.Contains("proxy_tcp_connect_failures_total{listener=\"l0\",service=\"secure\",cause=\"tls\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("result=\"untrusted\"", metrics, StringComparison.Ordinal);
    }

    private static async Task<string> MetricsWhenAsync(SidecarHost host, Func<string, bool> ready)
    {
        using var admin = Client();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var metrics = await admin.GetStringAsync(Url(host, "admin", "/metrics"));
            if (ready(metrics) || DateTime.UtcNow > deadline)
            {
                return metrics;
            }

            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task TlsAndPlaintextServicesOnOneEndpoint_NeverShareAConnection()
    {
        // Same endpoint: "secure" speaks TLS to it, "plain" plaintext. Were the plaintext service handed a pooled TLS
        // connection it would be answered; it must fail every time, while the TLS service keeps working.
        var host = await StartAsync(
            null,
            Secure(new UpstreamTlsConfig { Sni = "backend.example", CaPath = _caPath }),
            new ServiceConfig("plain", [], [_app.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 });
        using var http = Client();
        for (var i = 0; i < 3; i++)
        {
            using var secure = await http.GetAsync(Url(host, "l0", "/s"));
            Assert.Equal(HttpStatusCode.OK, secure.StatusCode);
            using var plain = await http.GetAsync(Url(host, "l1", "/p"));
            Assert.Equal(HttpStatusCode.BadGateway, plain.StatusCode);
        }
    }
}

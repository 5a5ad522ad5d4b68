using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.App;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// TLS termination on explicit listeners, end to end with real clients (curl, openssl s_client, HttpClient): the
/// handshake, ALPN dispatch (h2 to the HTTP/2 server, http/1.1 to the HTTP/1.1 forwarder), TLS termination for opaque
/// TCP, client certificates, and the handshake metric. The upstream is a plaintext Kestrel app.
/// </summary>
public sealed class TlsTerminationTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TlsTestCertificates _certs = new();
    private readonly List<IAsyncDisposable> _disposables = [];
    private HttpTestApp _web = null!;
    private string _caPath = "";
    private string _certPath = "";
    private string _keyPath = "";

    public async Task InitializeAsync()
    {
        _web = await HttpTestApp.StartAsync("web");
        _caPath = _certs.WriteCaPem();
        (_certPath, _keyPath) = _certs.WritePem(_certs.Server());
    }

    public async Task DisposeAsync()
    {
        foreach (var d in _disposables)
        {
            await d.DisposeAsync();
        }

        await _web.DisposeAsync();
        _certs.Dispose();
    }

    private ListenerTlsConfig Tls(TlsClientCertificateMode mode = TlsClientCertificateMode.None, IReadOnlyList<string>? alpn = null)
        => new(_certPath, _keyPath) { Alpn = alpn ?? ["h2", "http/1.1"], ClientCertificate = mode, CaPath = mode == TlsClientCertificateMode.None ? null : _caPath };

    private async Task<SidecarHost> StartAsync(ListenerTlsConfig tls, ListenerProtocol protocol = ListenerProtocol.Http)
    {
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            // The app speaks HTTP/1.1 only: HTTP/2 clients are translated (upstream protocol "same" would try h2c).
            Services = [new ServiceConfig("web", [], [_web.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 }],
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "web") { Protocol = protocol, Tls = tls }],
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_web.EndPoint));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static int Port(SidecarHost host) => ((IPEndPoint)host.AddressOf("edge")!).Port;

    private string Curl(SidecarHost host, string extra, string path = "/tls")
        => $"-s -S --max-time 15 --cacert {_caPath} --resolve localhost:{Port(host)}:127.0.0.1 {extra} -w \"\\n%{{http_version}}\" https://localhost:{Port(host)}{path}";

    [Theory]
    [InlineData("--http1.1", "1.1")]
    [InlineData("--http2", "2")]
    public async Task Curl_OverTls_AlpnPicksTheHttpStageAndRequestArrives(string flag, string expectedVersion)
    {
        var host = await StartAsync(Tls());
        var (code, output) = await RunAsync("curl", Curl(host, flag));
        Assert.True(code == 0, output);
        Assert.Contains("web GET /tls", output, StringComparison.Ordinal);
        Assert.EndsWith("\n" + expectedVersion, output.TrimEnd(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("h2")]
    [InlineData("http/1.1")]
    public async Task OpensslSClient_Alpn_ServerChoosesTheOfferedProtocol(string alpn)
    {
        var host = await StartAsync(Tls());
        var (code, output) = await RunAsync("openssl", $"s_client -connect 127.0.0.1:{Port(host)} -servername localhost -CAfile {_caPath} -alpn {alpn}", closeStdin: true);
        Assert.True(code == 0, output);
        Assert.Contains($"ALPN protocol: {alpn}", output, StringComparison.Ordinal);
        Assert.Contains("Verify return code: 0 (ok)", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HttpClient_Http2OverTls_Served()
    {
        var host = await StartAsync(Tls());
        using var client = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = TrustOurCa() },
        }) { Timeout = Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"https://localhost:{Port(host)}/h2")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("web GET /h2", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TcpListener_TlsTerminated_DecryptedBytesReachTheService()
    {
        // Protocol tcp: the HTTP/1.1 app sees plain bytes; curl speaks HTTPS to the listener.
        var host = await StartAsync(Tls(alpn: []), ListenerProtocol.Tcp);
        var (code, output) = await RunAsync("curl", Curl(host, "--http1.1", "/opaque"));
        Assert.True(code == 0, output);
        Assert.Contains("web GET /opaque", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RequiredClientCertificate_ClientWithoutOne_RefusedAndCounted()
    {
        var host = await StartAsync(Tls(TlsClientCertificateMode.Required));
        var (code, output) = await RunAsync("curl", Curl(host, "--http1.1"));
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("web GET", output, StringComparison.Ordinal);

        var metrics = await MetricsWhenAsync(host, static m => m.Contains("client_certificate_missing", StringComparison.Ordinal));
        Assert.Contains("proxy_tls_handshakes_total{", metrics, StringComparison.Ordinal);
        Assert.Contains("result=\"client_certificate_missing\"", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RequiredClientCertificate_ClientWithOneFromTheCa_Served()
    {
        var host = await StartAsync(Tls(TlsClientCertificateMode.Required));
        var (clientCert, clientKey) = _certs.WritePem(_certs.Client("workload"));
        var (code, output) = await RunAsync("curl", Curl(host, $"--http1.1 --cert {clientCert} --key {clientKey}"));
        Assert.True(code == 0, output);
        Assert.Contains("web GET /tls", output, StringComparison.Ordinal);
        var metrics = await MetricsWhenAsync(host, static m => m.Contains("result=\"ok\"", StringComparison.Ordinal));
        Assert.Contains("role=\"server\"", metrics, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-tls1_3")]
    [InlineData("-tls1_2")]
    public async Task OpensslSClient_SecondConnectionWithTheSession_Resumed(string version)
    {
        // What SslStream offers on Linux (OpenSSL): session tickets in server mode, for TLS 1.3 and 1.2, as long as
        // the listener presents the same SslStreamCertificateContext (its SSL_CTX is cached with it).
        var host = await StartAsync(Tls(alpn: []), ListenerProtocol.Tcp);
        var session = _certs.TempFile("");
        var common = $"s_client -connect 127.0.0.1:{Port(host)} -servername localhost -CAfile {_caPath} {version}";
        // stdbuf: s_client's stdout is block-buffered into a pipe; line buffering lets the marker through at once.
        var first = await RunUntilAsync("stdbuf", $"-oL openssl {common} -sess_out {session}", version == "-tls1_3" ? "Post-Handshake New Session Ticket arrived" : "Verify return code");
        Assert.Contains("New, TLSv1.", first, StringComparison.Ordinal);
        var (code, second) = await RunAsync("openssl", $"{common} -sess_in {session}", closeStdin: true);
        Assert.True(code == 0, second);
        Assert.Contains("Reused, TLSv1.", second, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_CertificateFileThatIsNoCertificate_ExitsWithUsageCodeNamingTheListener()
    {
        var garbage = _certs.TempFile("not a certificate");
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = null,
            Services = [new ServiceConfig("web", [], [_web.EndPoint])],
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "web") { Tls = new ListenerTlsConfig(garbage, _keyPath) }],
        };
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = await SidecarApp.RunAsync(config, stdout, stderr, CancellationToken.None).WaitAsync(Timeout);
        Assert.Equal(64, code);
        Assert.Contains($"error: listener edge: tls: the certificate file {garbage} holds no PEM certificate", stderr.ToString(), StringComparison.Ordinal);
    }

    private X509ChainPolicy TrustOurCa()
    {
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(_certs.Ca);
        return policy;
    }

    private static async Task<string> MetricsWhenAsync(SidecarHost host, Func<string, bool> ready)
    {
        using var http = new HttpClient { Timeout = Timeout };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var metrics = await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
            if (ready(metrics) || DateTime.UtcNow > deadline)
            {
                return metrics;
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Runs a client with stdin open until its output shows <paramref name="marker"/>, then closes stdin (it quits).</summary>
    private static async Task<string> RunUntilAsync(string file, string arguments, string marker)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        })!;
        var stderr = process.StandardError.ReadToEndAsync();
        var output = new System.Text.StringBuilder();
        while (await process.StandardOutput.ReadLineAsync().WaitAsync(Timeout) is { } line)
        {
            output.AppendLine(line);
            if (line.Contains(marker, StringComparison.Ordinal))
            {
                break;
            }
        }

        process.StandardInput.Close();
        output.Append(await process.StandardOutput.ReadToEndAsync().WaitAsync(Timeout));
        await process.WaitForExitAsync().WaitAsync(Timeout);
        return output + await stderr;
    }

    internal static async Task<(int Code, string Output)> RunAsync(string file, string arguments, bool closeStdin = false)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = closeStdin,
        })!;
        if (closeStdin)
        {
            process.StandardInput.Close();
        }

        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Timeout);
        return (process.ExitCode, await stdout + await stderr);
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// TLS passthrough by SNI end to end: real TLS backends (SslStream, self-signed), the composed sidecar on 127.0.0.1:0,
/// and real clients (SslStream and curl) that reach the right backend by the name they dial. The proxy never
/// terminates: the client sees the backend's own certificate.
/// </summary>
public sealed class TlsPassthroughTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly IPEndPoint VirtualAddress = new(IPAddress.Parse("10.0.0.9"), 443);
    private readonly List<IAsyncDisposable> _disposables = [];
    private TlsBackend _a = null!;
    private TlsBackend _b = null!;
    private TlsBackend _fallback = null!;

    public Task InitializeAsync()
    {
        _a = new TlsBackend("backend-a");
        _b = new TlsBackend("backend-b");
        _fallback = new TlsBackend("backend-default");
        _disposables.AddRange([_a, _b, _fallback]);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private ServiceConfig[] Services(params SniRouteConfig[] egressSni) =>
    [
        new ServiceConfig("a", [], [_a.EndPoint]),
        new ServiceConfig("b", [], [_b.EndPoint]),
        new ServiceConfig("default", [], [_fallback.EndPoint]),
        new ServiceConfig("egress", [VirtualAddress], [_fallback.EndPoint]) { Sni = egressSni },
    ];

    private static readonly SniRouteConfig[] Routes =
    [
        new(["a.example.com"], "a"),
        new(["*.b.example.com", "b.example.com"], "b"),
    ];

    private async Task<SidecarHost> StartAsync(string defaultService = "", TimeSpan? detectTimeout = null)
    {
        var config = new ProxyConfig
        {
            OutboundListen = new IPEndPoint(IPAddress.Loopback, 0),
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Detect = new DetectConfig { Timeout = detectTimeout ?? TimeSpan.FromSeconds(10) },
            Listeners = [new ListenerConfig("tls", new IPEndPoint(IPAddress.Loopback, 0), defaultService) { Sni = Routes }],
            Services = Services(Routes),
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(VirtualAddress));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    [Theory]
    [InlineData("a.example.com", "backend-a")]
    [InlineData("A.Example.COM", "backend-a")]
    [InlineData("b.example.com", "backend-b")]
    [InlineData("x.y.b.example.com", "backend-b")]
    public async Task ExplicitListener_SslStreamClient_ReachesTheBackendNamedBySni(string serverName, string expected)
    {
        var host = await StartAsync();
        var (body, peerSubject) = await GetOverTlsAsync((IPEndPoint)host.AddressOf("tls")!, serverName);
        Assert.Equal(expected + "\n", body);
        Assert.Equal("CN=" + expected, peerSubject); // passthrough: the backend's certificate, not the proxy's
        var backend = expected == "backend-a" ? _a : _b;
        Assert.Contains(serverName, backend.ServerNames, StringComparer.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task ExplicitListener_NoMatchWithoutDefault_ClosedAndCounted()
    {
        var host = await StartAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => GetOverTlsAsync((IPEndPoint)host.AddressOf("tls")!, "other.example.com"));
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_tcp_connect_failures_total{listener=\"tls\",service=\"tls\",cause=\"no_sni_route\"} 1", metrics, StringComparison.Ordinal);
        Assert.Empty(_a.ServerNames);
        Assert.Empty(_b.ServerNames);
    }

    [Fact]
    public async Task ExplicitListener_NoMatchOrNoSni_GoesToTheDefaultService()
    {
        var host = await StartAsync(defaultService: "default");
        var address = (IPEndPoint)host.AddressOf("tls")!;
        Assert.Equal("backend-default\n", (await GetOverTlsAsync(address, "other.example.com")).Body);

        // SslStream sends no SNI for an IP address target.
        Assert.Equal("backend-default\n", (await GetOverTlsAsync(address, "127.0.0.1")).Body);
        Assert.Equal("backend-a\n", (await GetOverTlsAsync(address, "a.example.com")).Body);
    }

    [Fact]
    public async Task ExplicitListener_MalformedClientHello_Closed()
    {
        var host = await StartAsync(defaultService: "default");
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(host.AddressOf("tls")!).WaitAsync(Timeout);

        // A ClientHello record whose cipher_suites length is odd.
        byte[] hello = [22, 3, 1, 0, 45, 1, 0, 0, 41, 3, 3, .. new byte[32], 0, 0, 3, 0x13, 0x01, 1, 0];
        await client.SendAsync(hello).WaitAsync(Timeout);
        var buffer = new byte[16];
        int n;
        try
        {
            n = await client.ReceiveAsync(buffer).WaitAsync(Timeout);
        }
        catch (SocketException)
        {
            n = 0; // reset
        }

        Assert.Equal(0, n);
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_tcp_connect_failures_total{listener=\"tls\",service=\"default\",cause=\"bad_client_hello\"} 1", metrics, StringComparison.Ordinal);
        Assert.Empty(_fallback.ServerNames);
    }

    [Fact]
    public async Task ExplicitListener_ClientHelloSplitAcrossWrites_WaitsForTheWholeHello()
    {
        var host = await StartAsync();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)host.AddressOf("tls")!).WaitAsync(Timeout);

        // Dribble the client's bytes one small write at a time (TCP_NODELAY): the peek has to wait several times.
        tcp.NoDelay = true;
        await using var slow = new DribbleStream(tcp.GetStream(), chunk: 50);
        var (body, _) = await GetOverTlsAsync(slow, "a.example.com");
        Assert.Equal("backend-a\n", body);
    }

    [Fact]
    public async Task CapturedOutbound_TlsToServiceWithSniRoutes_RoutedByName_OtherNamesStayWithTheService()
    {
        var host = await StartAsync();
        var outbound = (IPEndPoint)host.AddressOf("outbound")!;
        Assert.Equal("backend-a\n", (await GetOverTlsAsync(outbound, "a.example.com")).Body);
        Assert.Equal("backend-b\n", (await GetOverTlsAsync(outbound, "z.b.example.com")).Body);
        Assert.Equal("backend-default\n", (await GetOverTlsAsync(outbound, "unknown.example.com")).Body);
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_detect_total{listener=\"outbound\",protocol=\"tls\"} 3", metrics, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--http1.1")]
    [InlineData("--http2")]
    public async Task ExplicitListener_Curl_ReachesTheBackendNamedBySni(string httpVersion)
    {
        var host = await StartAsync();
        var port = ((IPEndPoint)host.AddressOf("tls")!).Port;
        foreach (var (name, expected) in new[] { ("a.example.com", "backend-a"), ("q.b.example.com", "backend-b") })
        {
            var output = await RunCurlAsync($"{httpVersion} -sk --max-time 10 --resolve {name}:{port}:127.0.0.1 https://{name}:{port}/");
            Assert.Equal(expected + "\n", output);
        }
    }

    [Fact]
    public void ConfigLoader_SniOnListenersAndServices_ReadValidatedAndShownInConfigJson()
    {
        var json = """
            {
              "listeners": [ { "name": "tls", "address": "127.0.0.1:0", "sni": [
                  { "serverNames": ["A.example.com"], "service": "a" }, { "serverNames": ["*.b.example.com"], "service": "b" } ] } ],
              "services": [
                { "name": "a", "endpoints": ["127.0.0.1:9001"] },
                { "name": "b", "endpoints": ["127.0.0.1:9002"] },
                { "name": "egress", "addresses": ["10.0.0.9:443"], "endpoints": ["127.0.0.1:9003"], "sni": [ { "serverNames": ["a.example.com"], "service": "a" } ] } ]
            }
            """;
        var result = LoadJson(json);
        Assert.Empty(result.Errors);
        var listener = Assert.Single(result.Config!.Listeners);
        Assert.Equal("", listener.Service);
        Assert.Equal(["a.example.com"], listener.Sni[0].ServerNames);
        Assert.Equal("a", result.Config.Services[2].Sni[0].Service);
        var written = ConfigJson.ToJson(result.Config);
        Assert.Contains("\"sni\"", written, StringComparison.Ordinal);
        Assert.Contains("*.b.example.com", written, StringComparison.Ordinal);

        // What /config shows loads back to the same routes.
        var again = LoadJson(written);
        Assert.Empty(again.Errors);
        Assert.Equal(listener.Sni[1].ServerNames, again.Config!.Listeners[0].Sni[1].ServerNames);
    }

    [Theory]
    [InlineData("""[ { "serverNames": ["bad name"], "service": "a" } ]""", "listeners[0].sni[0].serverNames[0]: \"bad name\" is not a server name")]
    [InlineData("""[ { "serverNames": ["*.*.x"], "service": "a" } ]""", "listeners[0].sni[0].serverNames[0]:")]
    [InlineData("""[ { "serverNames": ["a.x", "A.X"], "service": "a" } ]""", "listeners[0].sni[0].serverNames[1]: \"A.X\" is already routed by listeners[0].sni[0].serverNames[0]")]
    [InlineData("""[ { "serverNames": ["a.x"], "service": "nope" } ]""", "listeners[0].sni[0].service: no service is named \"nope\"")]
    [InlineData("""[ { "serverNames": [], "service": "a" } ]""", "listeners[0].sni[0].serverNames: must list at least one server name")]
    [InlineData("""[ { "names": ["a.x"], "service": "a" } ]""", "listeners[0].sni[0].names: unknown key")]
    [InlineData("""{ }""", "listeners[0].sni: must be an array")]
    public void ConfigLoader_BadSni_NamesTheKey(string sni, string error)
    {
        var json = $$"""
            { "listeners": [ { "name": "tls", "address": "127.0.0.1:0", "sni": {{sni}} } ],
              "services": [ { "name": "a", "endpoints": ["127.0.0.1:9001"] } ] }
            """;
        var result = LoadJson(json);
        Assert.Null(result.Config);
        Assert.Contains(result.Errors, e => e.StartsWith(error, StringComparison.Ordinal));
    }

    [Fact]
    public void ConfigLoader_SniOnHttpListener_Rejected()
    {
        var json = """
            { "listeners": [ { "name": "tls", "address": "127.0.0.1:0", "protocol": "http", "service": "a", "sni": [ { "serverNames": ["a.x"], "service": "a" } ] } ],
              "services": [ { "name": "a", "endpoints": ["127.0.0.1:9001"] } ] }
            """;
        var result = LoadJson(json);
        Assert.Contains("listeners[0].sni: SNI routes forward TLS unterminated and need protocol tcp, not http", result.Errors);
    }

    [Fact]
    public async Task CommandLine_BadSniConfig_Exit64NamingTheKey()
    {
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, """
                { "listeners": [ { "name": "tls", "address": "127.0.0.1:0", "sni": [ { "serverNames": ["bad name"], "service": "gone" } ] } ] }
                """);
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var code = await Proxy.Sidecar.Cli.SidecarCommandLine.InvokeAsync(["--config", file], stdout, stderr).WaitAsync(Timeout);
            Assert.Equal(Proxy.Sidecar.Cli.ExitCodes.Usage, code);
            Assert.Equal(64, code);
            Assert.Contains("error: listeners[0].sni[0].serverNames[0]: \"bad name\" is not a server name", stderr.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static ConfigResult LoadJson(string json) => ConfigLoader.Load(new Dictionary<string, string>(), json);

    private static async Task<(string Body, string PeerSubject)> GetOverTlsAsync(IPEndPoint proxy, string serverName)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(proxy).WaitAsync(Timeout);
        return await GetOverTlsAsync(tcp.GetStream(), serverName);
    }

    private static async Task<(string Body, string PeerSubject)> GetOverTlsAsync(Stream transport, string serverName)
    {
        await using var ssl = new SslStream(transport, leaveInnerStreamOpen: false);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            RemoteCertificateValidationCallback = static (_, certificate, _, _) => certificate is not null, // self-signed backends
        }).WaitAsync(Timeout);
        var subject = ssl.RemoteCertificate!.Subject;
        await ssl.WriteAsync(Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: {serverName}\r\n\r\n")).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(ssl, Encoding.ASCII);
        var response = await reader.ReadToEndAsync().WaitAsync(Timeout);
        var bodyStart = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 200 OK", response, StringComparison.Ordinal);
        return (response[(bodyStart + 4)..], subject);
    }

    private static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = new HttpClient { Timeout = Timeout };
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
    }

    private static async Task<string> RunCurlAsync(string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo("curl", arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Timeout);
        Assert.True(process.ExitCode == 0, $"curl {arguments} exited {process.ExitCode}: {await error}");
        return await output;
    }

    /// <summary>Writes through to the inner stream in chunks of at most <c>chunk</c> bytes, one write (segment) each.</summary>
    private sealed class DribbleStream(Stream inner, int chunk) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            for (var i = 0; i < buffer.Length; i += chunk)
            {
                await inner.WriteAsync(buffer.Slice(i, Math.Min(chunk, buffer.Length - i)), cancellationToken);
                await inner.FlushAsync(cancellationToken);
                await Task.Yield();
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}

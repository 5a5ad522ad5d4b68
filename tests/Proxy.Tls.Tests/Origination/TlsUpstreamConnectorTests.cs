using System.Net;
using System.Net.Security;
using System.Text;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Upstream;
using Proxy.Tls.Certificates;
using Proxy.Tls.Connections;
using Proxy.Tls.Origination;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Origination;

public sealed class TlsUpstreamConnectorTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly TlsTestCertificates _certs = new();
    private readonly ProxyMetrics _metrics = new();
    private readonly HandshakeCounter _counter;
    private readonly UpstreamConnector _plain = new();

    public TlsUpstreamConnectorTests() => _counter = new HandshakeCounter(_metrics);

    public void Dispose()
    {
        _plain.Dispose();
        _counter.Dispose();
        _metrics.Dispose();
        _certs.Dispose();
    }

    private TlsUpstreamConnector Connector(TlsClientOptions options) => new(_plain, options, "backend", _metrics);

    private TlsClientOptions Trusting(string? serverName = "localhost") => new() { ServerName = serverName, TrustedAuthorities = [_certs.Ca] };

    private static async Task<UpstreamConnectResult> ConnectAsync(TlsUpstreamConnector connector, IPEndPoint endPoint)
        => await connector.TryConnectAsync(new UpstreamAddress(endPoint), CancellationToken.None).AsTask().WaitAsync(Timeout);

    [Fact]
    public async Task Connect_TrustedEndpoint_HandshakesOffersAlpnAndBytesFlow()
    {
        await using var server = new TlsTestServer(_certs.Server(), TlsTestServer.Echo, alpn: [SslApplicationProtocol.Http11]);
        var connector = Connector(Trusting() with { ApplicationProtocols = [SslApplicationProtocol.Http11] });
        var result = await ConnectAsync(connector, server.EndPoint);
        Assert.True(result.IsSuccess);
        await using var connection = Assert.IsType<TlsConnection>(result.Connection);
        Assert.Equal(SslApplicationProtocol.Http11, connection.Info.ApplicationProtocol);
        Assert.Equal("CN=localhost", connection.Info.PeerCertificate?.Subject);

        await connection.Transport.Output.WriteAsync("hello"u8.ToArray()).AsTask().WaitAsync(Timeout);
        var read = await connection.Transport.Input.ReadAtLeastAsync(5).AsTask().WaitAsync(Timeout);
        Assert.Equal("hello", Encoding.ASCII.GetString(read.Buffer.Slice(0, 5)));
        connection.Transport.Input.AdvanceTo(read.Buffer.GetPosition(5));
        Assert.Equal("localhost", server.LastServerName);
        Assert.Equal(["client/ok"], _counter.Seen);
    }

    [Fact]
    public async Task Connect_NoServerName_CertificateCheckedAgainstTheEndpointIp()
    {
        await using var server = new TlsTestServer(_certs.Server(), TlsTestServer.Echo);
        var result = await ConnectAsync(Connector(Trusting(serverName: null)), server.EndPoint);
        Assert.True(result.IsSuccess, result.IsSuccess ? "" : result.Failure.ToString());
        await result.Connection!.DisposeAsync();
    }

    [Fact]
    public async Task Connect_CertificateFromAnotherCa_FailsUntrusted()
    {
        using var other = new TlsTestCertificates("Other CA");
        await using var server = new TlsTestServer(other.Server(), TlsTestServer.Echo);
        var result = await ConnectAsync(Connector(Trusting()), server.EndPoint);
        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Tls, result.Failure.Cause);
        Assert.Contains("certificate not trusted", result.Failure.Detail, StringComparison.Ordinal);
        Assert.Equal(["client/untrusted"], _counter.Seen);
    }

    [Fact]
    public async Task Connect_CertificateForAnotherName_FailsNameMismatch()
    {
        await using var server = new TlsTestServer(_certs.ServerFor("other.example"), TlsTestServer.Echo);
        var result = await ConnectAsync(Connector(Trusting("backend.example")), server.EndPoint);
        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Tls, result.Failure.Cause);
        Assert.Contains("name mismatch", result.Failure.Detail, StringComparison.Ordinal);
        Assert.Contains("backend.example", result.Failure.Detail, StringComparison.Ordinal);
        Assert.Equal(["client/name_mismatch"], _counter.Seen);
    }

    [Fact]
    public async Task Connect_InsecureSkipVerify_AcceptsAnyCertificate()
    {
        using var other = new TlsTestCertificates("Other CA");
        await using var server = new TlsTestServer(other.ServerFor("other.example"), TlsTestServer.Echo);
        var result = await ConnectAsync(Connector(new TlsClientOptions { ServerName = "x", InsecureSkipVerify = true }), server.EndPoint);
        Assert.True(result.IsSuccess);
        await result.Connection!.DisposeAsync();
    }

    [Fact]
    public async Task Connect_EndpointSaysNothing_FailsWithHandshakeTimeout()
    {
        await using var server = new TlsTestServer(null, silent: true);
        var result = await ConnectAsync(Connector(Trusting() with { HandshakeTimeout = TimeSpan.FromMilliseconds(300) }), server.EndPoint);
        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Tls, result.Failure.Cause);
        Assert.Contains("no complete handshake within 300 ms", result.Failure.Detail, StringComparison.Ordinal);
        Assert.Equal("tls", result.Failure.CauseTag);
        Assert.Equal(["client/timeout"], _counter.Seen);
    }

    [Fact]
    public async Task Connect_EndpointRequiresClientCertificate_PresentsTheConfiguredOne()
    {
        await using var server = new TlsTestServer(_certs.Server(), TlsTestServer.Echo, requireClientCertificate: true);
        var options = Trusting() with { ClientCertificate = CertificateSources.Fixed(_certs.Client("sidecar-a")) };
        var result = await ConnectAsync(Connector(options), server.EndPoint);
        Assert.True(result.IsSuccess);
        await using var connection = result.Connection!;

        // TLS 1.3: the server checks the client certificate after the client's handshake ended; a round trip proves it.
        await connection.Transport.Output.WriteAsync("x"u8.ToArray()).AsTask().WaitAsync(Timeout);
        var read = await connection.Transport.Input.ReadAtLeastAsync(1).AsTask().WaitAsync(Timeout);
        connection.Transport.Input.AdvanceTo(read.Buffer.End);
        Assert.Equal("CN=sidecar-a", server.LastClientCertificate?.Subject);
    }

    [Fact]
    public async Task Connect_Refused_PassesTheTcpFailureThrough()
    {
        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var closedPort = (IPEndPoint)probe.LocalEndPoint!;
        var result = await ConnectAsync(Connector(Trusting()), closedPort);
        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Refused, result.Failure.Cause);
        Assert.Empty(_counter.Seen);
    }
}

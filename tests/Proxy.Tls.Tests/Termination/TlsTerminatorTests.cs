using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Proxy.Core.Metrics;
using Proxy.Tls.Certificates;
using Proxy.Tls.Connections;
using Proxy.Tls.Termination;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Termination;

public sealed class TlsTerminatorTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly TlsTestCertificates _certs = new();
    private readonly ProxyMetrics _metrics = new();
    private readonly HandshakeCounter _counter;

    public TlsTerminatorTests() => _counter = new HandshakeCounter(_metrics);

    public void Dispose()
    {
        _counter.Dispose();
        _metrics.Dispose();
        _certs.Dispose();
    }

    private TlsTerminator Terminator(TlsServerOptions? options = null)
        => new("test", options ?? new TlsServerOptions { Certificate = CertificateSources.Fixed(_certs.Server()) }, _metrics);

    private SslClientAuthenticationOptions ClientOptions(string host = "localhost", params SslApplicationProtocol[] alpn)
    {
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(_certs.Ca);
        return new SslClientAuthenticationOptions
        {
            TargetHost = host,
            ApplicationProtocols = alpn.Length == 0 ? null : [.. alpn],
            CertificateChainPolicy = policy,
        };
    }

    private static async Task<(TlsConnection? Server, SslStream Client)> HandshakeAsync(TlsTerminator terminator, SocketPair pair, SslClientAuthenticationOptions clientOptions)
    {
        var client = new SslStream(pair.PeerStream());
        var serverTask = terminator.TerminateAsync(pair.Connection, CancellationToken.None).AsTask();
        var clientTask = client.AuthenticateAsClientAsync(clientOptions);
        var server = await serverTask.WaitAsync(Timeout);
        try
        {
            await clientTask.WaitAsync(Timeout);
        }
        catch (Exception e) when (e is AuthenticationException or IOException && server is null)
        {
            // The server refused: the client's side fails as well (reset or alert).
        }

        return (server, client);
    }

    [Fact]
    public async Task Terminate_ClientOffersH2AndHttp11_AlpnChoosesH2AndBytesFlowBothWays()
    {
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(Terminator(), pair, ClientOptions("localhost", SslApplicationProtocol.Http2, SslApplicationProtocol.Http11));
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;

        Assert.True(server.Info.IsHttp2);
        Assert.Equal(SslApplicationProtocol.Http2, client.NegotiatedApplicationProtocol);
        Assert.Equal("localhost", server.Info.ServerName);
        Assert.Equal(TlsRole.Server, server.Info.Role);
        Assert.Null(server.Info.PeerCertificate);

        await client.WriteAsync("ping"u8.ToArray()).AsTask().WaitAsync(Timeout);
        var read = await server.Transport.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Timeout);
        Assert.Equal("ping", Encoding.ASCII.GetString(read.Buffer.Slice(0, 4)));
        server.Transport.Input.AdvanceTo(read.Buffer.GetPosition(4));

        await server.Transport.Output.WriteAsync("pong"u8.ToArray()).AsTask().WaitAsync(Timeout);
        var buffer = new byte[4];
        await client.ReadExactlyAsync(buffer).AsTask().WaitAsync(Timeout);
        Assert.Equal("pong", Encoding.ASCII.GetString(buffer));
        Assert.Equal(["server/ok"], _counter.Seen);
    }

    [Fact]
    public async Task Terminate_ClientOffersOnlyHttp11_AlpnChoosesHttp11()
    {
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(Terminator(), pair, ClientOptions("localhost", SslApplicationProtocol.Http11));
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;
        Assert.Equal(SslApplicationProtocol.Http11, server.Info.ApplicationProtocol);
        Assert.False(server.Info.IsHttp2);
    }

    [Fact]
    public async Task Terminate_ClientOffersNoAlpn_NoProtocolNegotiated()
    {
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(Terminator(), pair, ClientOptions("localhost"));
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;
        Assert.Equal(default, server.Info.ApplicationProtocol);
    }

    [Fact]
    public async Task Terminate_SelectorBySni_PresentsTheNamedCertificate()
    {
        var a = CertificateSources.Fixed(_certs.ServerFor("a.example"));
        var b = CertificateSources.Fixed(_certs.ServerFor("b.example"));
        var terminator = Terminator(new TlsServerOptions { CertificateSelector = name => name == "a.example" ? a : name == "b.example" ? b : null });
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(terminator, pair, ClientOptions("b.example"));
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;
        Assert.Equal("CN=b.example", client.RemoteCertificate!.Subject);
        Assert.Equal("b.example", server.Info.ServerName);
    }

    [Fact]
    public async Task Terminate_SelectorHasNoCertificateForSni_RefusedAndCountedNoCertificate()
    {
        var terminator = Terminator(new TlsServerOptions { CertificateSelector = static _ => null });
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(terminator, pair, ClientOptions("unknown.example"));
        using var _ = client;
        Assert.Null(server);
        Assert.Equal(["server/no_certificate"], _counter.Seen);
    }

    [Fact]
    public async Task Terminate_ClientSaysNothing_TimesOutAndAborts()
    {
        var terminator = Terminator(new TlsServerOptions { Certificate = CertificateSources.Fixed(_certs.Server()), HandshakeTimeout = TimeSpan.FromMilliseconds(200) });
        await using var pair = await SocketPair.CreateAsync();
        var server = await terminator.TerminateAsync(pair.Connection, CancellationToken.None).AsTask().WaitAsync(Timeout);
        Assert.Null(server);
        Assert.Equal(["server/timeout"], _counter.Seen);

        // The raw connection was aborted: the peer sees the connection end.
        var buffer = new byte[1];
        var read = await ReadOrResetAsync(pair, buffer);
        Assert.Equal(0, read);
    }

    [Fact]
    public async Task Terminate_ConnectionClosesMidHandshake_NullAndCountedClosed()
    {
        await using var pair = await SocketPair.CreateAsync();
        using var closed = new CancellationTokenSource();
        var serverTask = Terminator().TerminateAsync(pair.Connection, closed.Token).AsTask();
        await closed.CancelAsync();
        Assert.Null(await serverTask.WaitAsync(Timeout));
        Assert.Equal(["server/closed"], _counter.Seen);
    }

    [Fact]
    public async Task Terminate_PlaintextInsteadOfTls_FailsAndCountedFailed()
    {
        await using var pair = await SocketPair.CreateAsync();
        var serverTask = Terminator().TerminateAsync(pair.Connection, CancellationToken.None).AsTask();
        await pair.Peer.SendAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
        Assert.Null(await serverTask.WaitAsync(Timeout));
        Assert.Equal(["server/failed"], _counter.Seen);
    }

    [Fact]
    public async Task Terminate_RequiredClientCertificateMissing_RefusedAndCounted()
    {
        var terminator = Terminator(new TlsServerOptions
        {
            Certificate = CertificateSources.Fixed(_certs.Server()),
            ClientCertificateMode = ClientCertificateMode.Required,
            ClientCertificateAuthorities = [_certs.Ca],
        });
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(terminator, pair, ClientOptions());
        using var _ = client;
        Assert.Null(server);
        Assert.Equal(["server/client_certificate_missing"], _counter.Seen);
    }

    [Fact]
    public async Task Terminate_RequiredClientCertificateFromTheCa_AcceptedAndVisible()
    {
        var terminator = Terminator(new TlsServerOptions
        {
            Certificate = CertificateSources.Fixed(_certs.Server()),
            ClientCertificateMode = ClientCertificateMode.Required,
            ClientCertificateAuthorities = [_certs.Ca],
        });
        await using var pair = await SocketPair.CreateAsync();
        var options = ClientOptions();
        options.ClientCertificates = [_certs.Client("workload-a")];
        var (server, client) = await HandshakeAsync(terminator, pair, options);
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;
        Assert.Equal("CN=workload-a", server.Info.PeerCertificate?.Subject);
    }

    [Fact]
    public async Task Terminate_RequiredClientCertificateFromAnotherCa_Rejected()
    {
        using var other = new TlsTestCertificates("Other CA");
        var terminator = Terminator(new TlsServerOptions
        {
            Certificate = CertificateSources.Fixed(_certs.Server()),
            ClientCertificateMode = ClientCertificateMode.Required,
            ClientCertificateAuthorities = [_certs.Ca],
        });
        await using var pair = await SocketPair.CreateAsync();
        var options = ClientOptions();
        options.ClientCertificates = [other.Client("intruder")];
        var (server, client) = await HandshakeAsync(terminator, pair, options);
        using var _ = client;
        Assert.Null(server);
        Assert.Equal(["server/client_certificate_rejected"], _counter.Seen);
    }

    [Fact]
    public async Task Output_Completed_SendsCloseNotifyThenClientReadsEnd()
    {
        await using var pair = await SocketPair.CreateAsync();
        var (server, client) = await HandshakeAsync(Terminator(), pair, ClientOptions());
        Assert.NotNull(server);
        await using var _ = server;
        using var __ = client;

        await server.Transport.Output.WriteAsync("bye"u8.ToArray()).AsTask().WaitAsync(Timeout);
        await server.Transport.Output.CompleteAsync().AsTask().WaitAsync(Timeout);
        var buffer = new byte[16];
        var total = 0;
        int n;
        while ((n = await client.ReadAsync(buffer.AsMemory(total)).AsTask().WaitAsync(Timeout)) > 0)
        {
            total += n;
        }

        Assert.Equal("bye", Encoding.ASCII.GetString(buffer, 0, total));

        // The other direction still works (half-close), and the client's close ends the server's input.
        await client.WriteAsync("last"u8.ToArray()).AsTask().WaitAsync(Timeout);
        await client.ShutdownAsync().WaitAsync(Timeout);
        var all = new MemoryStream();
        while (true)
        {
            var read = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
            foreach (var segment in read.Buffer)
            {
                all.Write(segment.Span);
            }

            server.Transport.Input.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                break;
            }
        }

        Assert.Equal("last", Encoding.ASCII.GetString(all.ToArray()));
    }

    private static async Task<int> ReadOrResetAsync(SocketPair pair, byte[] buffer)
    {
        try
        {
            return await pair.Peer.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout);
        }
        catch (System.Net.Sockets.SocketException)
        {
            return 0;
        }
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Ca;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Identity;

/// <summary>Real TLS handshakes (SslStream both sides, 127.0.0.1) with mesh certificates, each side verifying the other's SPIFFE ID.</summary>
public sealed class MutualTlsHandshakeTests : IDisposable
{
    private const string Web = "spiffe://cluster.local/ns/default/sa/web";
    private const string Api = "spiffe://cluster.local/ns/default/sa/api";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly MeshCertificateAuthority _ca = TestCertificates.NewCa();
    private readonly MeshTrust _trust;
    private readonly string _dir = Directory.CreateTempSubdirectory("proxy-mtls-").FullName;

    public MutualTlsHandshakeTests() => _trust = new MeshTrust([_ca.Certificate]);

    public void Dispose()
    {
        _trust.Dispose();
        _ca.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task MutualTls_EachSideVerifiesTheOthersSpiffeId()
    {
        using var serverCert = TestCertificates.Issue(_ca, Api);
        using var clientCert = TestCertificates.Issue(_ca, Web);
        await using var server = new EchoServer(CertificateSources.Fixed(serverCert, [_ca.Certificate]), _trust, IdentityPattern.Exact(SpiffeId.Parse(Web)));

        PeerVerification? clientSaw = null;
        await using var client = await ConnectAsync(server.Port, CertificateSources.Fixed(clientCert, [_ca.Certificate]), IdentityPattern.Exact(SpiffeId.Parse(Api)), r => clientSaw = r);
        Assert.Equal("hello", await EchoAsync(client, "hello"));

        Assert.Equal(Api, clientSaw?.Identity?.Uri);
        var serverSaw = await server.Verifications.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.True(serverSaw.IsValid, serverSaw.ToString());
        Assert.Equal(Web, serverSaw.Identity?.Uri);
        var feature = serverSaw.ToPeerIdentityFeature();
        Assert.Equal(Web, feature.PeerIdentity);
        Assert.Equal(Proxy.Core.Identity.PeerTransport.MutualTls, feature.Transport);
    }

    [Fact]
    public async Task MutualTls_IntermediateCa_PeersSendTheirChain_RootIsEnough()
    {
        using var intermediate = TestCertificates.NewIntermediate(_ca, _dir);
        using var serverCert = TestCertificates.Issue(intermediate, Api);
        using var clientCert = TestCertificates.Issue(intermediate, Web);
        await using var server = new EchoServer(CertificateSources.Fixed(serverCert, [intermediate.Certificate]), _trust, IdentityPattern.Exact(SpiffeId.Parse(Web)));

        PeerVerification? clientSaw = null;
        await using var client = await ConnectAsync(server.Port, CertificateSources.Fixed(clientCert, [intermediate.Certificate]), IdentityPattern.Exact(SpiffeId.Parse(Api)), r => clientSaw = r);
        Assert.Equal("hi", await EchoAsync(client, "hi"));
        Assert.True(clientSaw?.IsValid, clientSaw?.ToString());
        var serverSaw = await server.Verifications.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.True(serverSaw.IsValid, serverSaw.ToString());
        Assert.Equal(Web, serverSaw.Identity?.Uri);
    }

    [Fact]
    public async Task MutualTls_ServerHasWrongIdentity_ClientRefuses()
    {
        using var serverCert = TestCertificates.Issue(_ca, Api);
        using var clientCert = TestCertificates.Issue(_ca, Web);
        await using var server = new EchoServer(CertificateSources.Fixed(serverCert, [_ca.Certificate]), _trust, IdentityPattern.Any);

        PeerVerification? clientSaw = null;
        await Assert.ThrowsAsync<AuthenticationException>(() =>
            ConnectAsync(server.Port, CertificateSources.Fixed(clientCert), IdentityPattern.Exact(SpiffeId.Parse("spiffe://cluster.local/ns/default/sa/db")), r => clientSaw = r));
        Assert.Equal(PeerVerificationError.WrongIdentity, clientSaw?.Error);
        Assert.Equal(Api, clientSaw?.Identity?.Uri);
    }

    [Fact]
    public async Task MutualTls_ClientFromAnotherCa_ServerRefuses()
    {
        using var other = TestCertificates.NewCa();
        using var serverCert = TestCertificates.Issue(_ca, Api);
        using var intruder = TestCertificates.Issue(other, Web);
        await using var server = new EchoServer(CertificateSources.Fixed(serverCert), _trust, IdentityPattern.Any);

        // With TLS 1.3 the client may finish its side before the server checks its certificate: the refusal shows on
        // the handshake or on the first exchange.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var client = await ConnectAsync(server.Port, CertificateSources.Fixed(intruder, [other.Certificate]), IdentityPattern.Any);
            await EchoAsync(client, "let me in");
        });
        var serverSaw = await server.Verifications.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(PeerVerificationError.UntrustedIssuer, serverSaw.Error);
    }

    [Fact]
    public async Task MutualTls_ClientWithoutCertificate_ServerRefuses()
    {
        using var serverCert = TestCertificates.Issue(_ca, Api);
        await using var server = new EchoServer(CertificateSources.Fixed(serverCert), _trust, IdentityPattern.Any);
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var client = await ConnectAsync(server.Port, clientCertificate: null, IdentityPattern.Any);
            await EchoAsync(client, "anyone?");
        });
        var serverSaw = await server.Verifications.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(PeerVerificationError.NoCertificate, serverSaw.Error);
    }

    [Fact]
    public async Task Rotation_NextHandshakeGetsNewCertificate_EstablishedConnectionKeepsWorking()
    {
        var certPath = Path.Combine(_dir, "tls.crt");
        var keyPath = Path.Combine(_dir, "tls.key");
        using var first = TestCertificates.Issue(_ca, Api);
        CertificateFiles.Write(_ca, first, certPath, keyPath);
        using var source = new FileCertificateSource(certPath, keyPath, new FileCertificateSourceOptions
        {
            WatchFileSystem = true,
            DebounceDelay = TimeSpan.FromMilliseconds(20),
            PollInterval = System.Threading.Timeout.InfiniteTimeSpan,
        });
        using var clientCert = TestCertificates.Issue(_ca, Web);
        await using var server = new EchoServer(source, _trust, IdentityPattern.Any);

        await using var before = await ConnectAsync(server.Port, CertificateSources.Fixed(clientCert), IdentityPattern.Any);
        Assert.Equal(first.Thumbprint, before.RemoteCertificate!.GetCertHashString());
        Assert.Equal("one", await EchoAsync(before, "one"));

        var reloaded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        source.Reloaded += (_, e) =>
        {
            if (e.Outcome == CertificateReloadOutcome.Reloaded)
            {
                reloaded.TrySetResult();
            }
        };
        using var second = TestCertificates.Issue(_ca, Api);
        CertificateFiles.Write(_ca, second, certPath, keyPath);
        await reloaded.Task.WaitAsync(Timeout);

        await using var after = await ConnectAsync(server.Port, CertificateSources.Fixed(clientCert), IdentityPattern.Any);
        Assert.Equal(second.Thumbprint, after.RemoteCertificate!.GetCertHashString());
        Assert.Equal("two", await EchoAsync(after, "two"));
        Assert.Equal("three", await EchoAsync(before, "three")); // the connection made before the rotation is untouched
        Assert.Equal(first.Thumbprint, before.RemoteCertificate!.GetCertHashString());
    }

    [Fact]
    public async Task Rotation_BadNewFiles_HandshakesKeepPresentingTheOldCertificate()
    {
        var certPath = Path.Combine(_dir, "tls.crt");
        var keyPath = Path.Combine(_dir, "tls.key");
        using var first = TestCertificates.Issue(_ca, Api);
        CertificateFiles.Write(_ca, first, certPath, keyPath);
        using var source = new FileCertificateSource(certPath, keyPath, new FileCertificateSourceOptions { WatchFileSystem = false, PollInterval = System.Threading.Timeout.InfiniteTimeSpan });
        using var clientCert = TestCertificates.Issue(_ca, Web);
        await using var server = new EchoServer(source, _trust, IdentityPattern.Any);

        await File.WriteAllTextAsync(keyPath, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        Assert.Equal(CertificateReloadOutcome.Failed, source.CheckNow());
        await using var client = await ConnectAsync(server.Port, CertificateSources.Fixed(clientCert), IdentityPattern.Any);
        Assert.Equal(first.Thumbprint, client.RemoteCertificate!.GetCertHashString());
        Assert.Equal("still", await EchoAsync(client, "still"));
    }

    private async Task<SslStream> ConnectAsync(int port, ICertificateSource? clientCertificate, IdentityPattern expected, Action<PeerVerification>? observe = null)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port).WaitAsync(Timeout);
        var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "api.default.svc",
                ClientCertificateContext = clientCertificate?.Current,
                RemoteCertificateValidationCallback = _trust.CreateValidationCallback(PeerRole.Server, expected, observe),
            }).WaitAsync(Timeout);
            return ssl;
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }
    }

    private static async Task<string> EchoAsync(SslStream stream, string text)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        await stream.WriteAsync(bytes).AsTask().WaitAsync(Timeout);
        await stream.FlushAsync().WaitAsync(Timeout);
        var buffer = new byte[bytes.Length];
        await stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(Timeout);
        return System.Text.Encoding.ASCII.GetString(buffer);
    }

    /// <summary>A TLS echo server that requires a client certificate, reads its certificate source per handshake and reports each verification.</summary>
    private sealed class EchoServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly ICertificateSource _certificate;
        private readonly MeshTrust _trust;
        private readonly IdentityPattern _expected;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;
        private readonly List<Task> _connections = [];

        public EchoServer(ICertificateSource certificate, MeshTrust trust, IdentityPattern expected)
        {
            _certificate = certificate;
            _trust = trust;
            _expected = expected;
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _accepting = AcceptAsync();
        }

        public int Port { get; }

        public System.Threading.Channels.Channel<PeerVerification> Verifications { get; } = System.Threading.Channels.Channel.CreateUnbounded<PeerVerification>();

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var tcp = await _listener.AcceptTcpClientAsync(_stop.Token);
                    lock (_connections)
                    {
                        _connections.Add(ServeAsync(tcp));
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or SocketException or ObjectDisposedException)
            {
                // Stopped.
            }
        }

        private async Task ServeAsync(TcpClient tcp)
        {
            using (tcp)
            {
                await using var ssl = new SslStream(tcp.GetStream());
                try
                {
                    await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = _certificate.Current, // read per handshake
                        ClientCertificateRequired = true,
                        RemoteCertificateValidationCallback = _trust.CreateValidationCallback(PeerRole.Client, _expected, r => Verifications.Writer.TryWrite(r)),
                    }, _stop.Token);
                    var buffer = new byte[1024];
                    int read;
                    while ((read = await ssl.ReadAsync(buffer, _stop.Token)) > 0)
                    {
                        await ssl.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
                    }
                }
                catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException)
                {
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting.WaitAsync(Timeout);
            Task[] connections;
            lock (_connections)
            {
                connections = [.. _connections];
            }

            await Task.WhenAll(connections).WaitAsync(Timeout);
            _stop.Dispose();
        }
    }
}

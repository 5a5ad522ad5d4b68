using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.Grpc;
using Proxy.Sidecar.Tests.Grpc.Echo;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// gRPC with TLS on both hops: Grpc.Net.Client over https to a terminating listener (ALPN h2 picks the HTTP/2 server),
/// then TLS origination with ALPN h2 to a Grpc.AspNetCore server on HTTPS. Unary and bidirectional streaming.
/// </summary>
public sealed class TlsGrpcTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TlsTestCertificates _certs = new();
    private GrpcTestServer _server = null!;
    private SidecarHost _host = null!;
    private GrpcChannel _channel = null!;

    public async Task InitializeAsync()
    {
        _server = await GrpcTestServer.StartAsync(_certs.Server("echo.internal"));
        var ca = _certs.WriteCaPem();
        var (cert, key) = _certs.WritePem(_certs.Server());
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = null,
            Services = [new ServiceConfig("echo", [], [_server.EndPoint]) { Tls = new UpstreamTlsConfig { Sni = "echo.internal", CaPath = ca } }],
            Listeners =
            [
                new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "echo")
                {
                    Protocol = ListenerProtocol.Http,
                    Tls = new ListenerTlsConfig(cert, key) { Alpn = ["h2", "http/1.1"] },
                },
            ],
        };
        _host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(_server.EndPoint));
        await _host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(_certs.Ca);
        var port = ((IPEndPoint)_host.AddressOf("edge")!).Port;
        _channel = GrpcChannel.ForAddress($"https://localhost:{port}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { UseProxy = false, SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = policy } },
        });
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _host.DisposeAsync();
        await _server.DisposeAsync();
        _certs.Dispose();
    }

    [Fact]
    public async Task Unary_TlsBothHops_Answered()
    {
        var client = new Echo.EchoClient(_channel);
        var reply = await client.UnaryAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8("over tls"), Text = "héllo" }, deadline: DateTime.UtcNow.AddSeconds(20));
        Assert.Equal("over tls", reply.Payload.ToStringUtf8());
        Assert.Equal("héllo", reply.Text);
    }

    [Fact]
    public async Task Bidi_TlsBothHops_PingPong()
    {
        var client = new Echo.EchoClient(_channel);
        using var call = client.Bidi(deadline: DateTime.UtcNow.AddSeconds(20));
        for (var i = 0; i < 5; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8($"m{i}") }).WaitAsync(Timeout);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
            Assert.Equal($"m{i}", call.ResponseStream.Current.Payload.ToStringUtf8());
            Assert.Equal(i, call.ResponseStream.Current.Index);
        }

        await call.RequestStream.CompleteAsync().WaitAsync(Timeout);
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }
}

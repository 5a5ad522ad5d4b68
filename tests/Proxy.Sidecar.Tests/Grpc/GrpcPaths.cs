using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>How a test's gRPC client reaches the server.</summary>
public enum GrpcPath
{
    /// <summary>Client straight to the server: the baseline every other path must match.</summary>
    Direct,

    /// <summary>Client (h2c) to an explicit HTTP listener for service <c>echo</c> (upstreamProtocol http2) to the server.</summary>
    Explicit,

    /// <summary>
    /// Client (h2c) to the outbound capture listener, the original destination (faked) being the virtual address of
    /// service <c>echo</c> (upstreamProtocol same: HTTP/2 because the client spoke it).
    /// </summary>
    Captured,

    /// <summary>Client (h2c) to the outbound capture listener, the original destination being the server itself (no service: passthrough).</summary>
    CapturedPassthrough,

    /// <summary>
    /// Client (h2c, as a peer's sidecar would call) to the inbound capture listener, the original destination being
    /// the local app (the server), dialled from the inbound passthrough address 127.0.0.6.
    /// </summary>
    Inbound,

    /// <summary>
    /// Two sidecars with mesh mTLS between them, both captured: client (h2c) to sidecar A's outbound listener (original
    /// destination the virtual address of <c>echo</c>, a meshed service whose endpoint is sidecar B), mesh mTLS (ALPN
    /// proxy-mesh/h2) to B's inbound listener (strict), B to the server (original destination faked as the server).
    /// </summary>
    Mesh,
}

/// <summary>
/// One <see cref="GrpcPath"/> set up in front of a server: the sidecar (in-process, every listener on 127.0.0.1:0)
/// when the path has one, and the address the client dials.
/// </summary>
internal sealed class GrpcPathSetup : IAsyncDisposable
{
    public const string ServiceName = "echo";
    public const string ListenerName = "edge";

    /// <summary>The service's virtual address (a ClusterIP-like address nothing listens on; the capture is faked).</summary>
    public static readonly IPEndPoint VirtualAddress = IPEndPoint.Parse("10.96.0.20:50051");

    private readonly List<IAsyncDisposable> _more = [];
    private Tls.MeshTestPki? _pki;

    private GrpcPathSetup(EndPoint address, SidecarHost? host)
    {
        Address = new Uri($"http://{address}");
        Host = host;
    }

    /// <summary>What the client dials: <c>http://127.0.0.1:port</c>.</summary>
    public Uri Address { get; }

    public SidecarHost? Host { get; }

    /// <summary>A sidecar configuration with every listener on 127.0.0.1:0 and nothing else.</summary>
    public static ProxyConfig BaseConfig() => new()
    {
        OutboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        InboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
    };

    /// <summary>Service <c>echo</c>: virtual address <see cref="VirtualAddress"/>, the given endpoints.</summary>
    public static ServiceConfig Service(UpstreamProtocol protocol, params IPEndPoint[] endpoints)
        => new(ServiceName, [VirtualAddress], endpoints) { UpstreamProtocol = protocol };

    /// <summary>An explicit HTTP listener named <see cref="ListenerName"/> on 127.0.0.1:0.</summary>
    public static ListenerConfig Edge(string service, params RouteConfig[] routes)
        => new(ListenerName, new IPEndPoint(IPAddress.Loopback, 0), service) { Protocol = ListenerProtocol.Http, Routes = routes };

    public static async Task<GrpcPathSetup> StartAsync(GrpcPath path, IPEndPoint server)
    {
        switch (path)
        {
            case GrpcPath.Direct:
                return new GrpcPathSetup(server, null);
            case GrpcPath.Explicit:
            {
                var config = BaseConfig() with { Services = [Service(UpstreamProtocol.Http2, server)], Listeners = [Edge(ServiceName)] };
                return await StartSidecarAsync(config, VirtualAddress, ListenerName);
            }

            case GrpcPath.Captured:
            {
                var config = BaseConfig() with { Services = [Service(UpstreamProtocol.Same, server)] };
                return await StartSidecarAsync(config, VirtualAddress, "outbound");
            }

            case GrpcPath.CapturedPassthrough:
                return await StartSidecarAsync(BaseConfig(), server, "outbound");
            case GrpcPath.Inbound:
                return await StartSidecarAsync(BaseConfig(), server, "inbound");
            case GrpcPath.Mesh:
            {
                var pki = new Tls.MeshTestPki();
                try
                {
                    var inbound = await StartSidecarAsync(
                        BaseConfig() with { Mesh = pki.MeshFor("spiffe://cluster.local/ns/shop/sa/echo", MeshMode.Strict) }, server, "inbound");
                    var peer = (IPEndPoint)inbound.Host!.AddressOf("inbound")!;
                    var outboundConfig = BaseConfig() with
                    {
                        Mesh = pki.MeshFor("spiffe://cluster.local/ns/web/sa/frontend"),
                        Services = [Service(UpstreamProtocol.Same, peer) with { Mesh = new ServiceMeshConfig { Identity = "spiffe://cluster.local/ns/shop/sa/echo" } }],
                    };
                    var outbound = await StartSidecarAsync(outboundConfig, VirtualAddress, "outbound");
                    outbound._more.Add(inbound);
                    outbound._pki = pki;
                    return outbound;
                }
                catch
                {
                    pki.Dispose();
                    throw;
                }
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(path), path, null);
        }
    }

    /// <summary>A sidecar with <paramref name="config"/>, every captured connection's original destination faked as <paramref name="originalDestination"/>.</summary>
    public static async Task<GrpcPathSetup> StartSidecarAsync(ProxyConfig config, IPEndPoint originalDestination, string listener)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(originalDestination));
        try
        {
            await host.StartAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }

        return new GrpcPathSetup(host.AddressOf(listener)!, host);
    }

    /// <summary>A channel to <see cref="Address"/> (h2c prior knowledge), messages up to <see cref="GrpcTestServer.MaxMessageSize"/>.</summary>
    public GrpcChannel Channel() => GrpcChannel.ForAddress(Address, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(10) },
        MaxReceiveMessageSize = GrpcTestServer.MaxMessageSize,
        MaxSendMessageSize = GrpcTestServer.MaxMessageSize,
        DisposeHttpClient = true,
    });

    /// <summary>A loopback port nothing listens on (bound, read back, released).</summary>
    public static IPEndPoint DeadEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }

    public async ValueTask DisposeAsync()
    {
        if (Host is not null)
        {
            await Host.DisposeAsync();
        }

        foreach (var more in _more)
        {
            await more.DisposeAsync();
        }

        _pki?.Dispose();
    }
}

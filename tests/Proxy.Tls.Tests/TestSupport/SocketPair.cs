using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>
/// A real loopback TCP connection: one end as our transport's <see cref="ConnectionContext"/> (what a TLS stage sees),
/// the other as a plain <see cref="Socket"/> for the test's peer (an SslStream over a NetworkStream).
/// </summary>
public sealed class SocketPair : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private SocketPair(UpstreamConnector connector, ConnectionContext connection, Socket peer)
    {
        Connector = connector;
        Connection = connection;
        Peer = peer;
    }

    public UpstreamConnector Connector { get; }

    public ConnectionContext Connection { get; }

    public Socket Peer { get; }

    public NetworkStream PeerStream() => new(Peer, ownsSocket: false);

    public static async Task<SocketPair> CreateAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var connector = new UpstreamConnector();
        var accept = listener.AcceptAsync();
        var result = await connector.TryConnectAsync(new UpstreamAddress((IPEndPoint)listener.LocalEndPoint!), CancellationToken.None).AsTask().WaitAsync(Timeout);
        if (!result.IsSuccess)
        {
            Assert.Fail(result.Failure.ToString());
        }

        var peer = await accept.WaitAsync(Timeout);
        return new SocketPair(connector, result.Connection!, peer);
    }

    public async ValueTask DisposeAsync()
    {
        Peer.Dispose();
        Connection.Abort();
        await Connection.DisposeAsync().AsTask().WaitAsync(Timeout);
        Connector.Dispose();
    }
}

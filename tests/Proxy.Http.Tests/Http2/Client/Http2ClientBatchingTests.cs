using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>
/// On an event loop, what the client connection writes while it handles one read leaves in one send at the end of the
/// loop's batch (as the server side does): with many streams on one upstream connection that is one send per batch
/// instead of one per stream.
/// </summary>
public sealed class Http2ClientBatchingTests
{
    [Fact]
    public async Task FramesAnsweredFromOneRead_OnTheEventLoop_LeaveInOneSend()
    {
        await using var server = new RawH2Server();
        using var connector = new UpstreamConnector(
            new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5), Transport = new SocketTransportOptions { IoThreads = 1 } },
            NullLoggerFactory.Instance);
        var connected = await connector.TryConnectAsync(new UpstreamAddress(server.EndPoint), default).AsTask().WaitAsync(Timeouts.Short);
        await using var transport = connected.Connection ?? throw new InvalidOperationException($"connect failed: {connected.Failure}");
        await using var connection = new Http2ClientConnection(transport.Transport);
        var start = connection.StartAsync();
        await server.AcceptAsync();
        await server.HandshakeAsync();
        await start.WaitAsync(Timeouts.Short);
        // The client's ACK of our SETTINGS: after it the connection is quiet.
        var ack = await server.ReadUntilAsync(H2Frame.Settings);
        Assert.Equal(0x1, ack.Flags);

        // Three PINGs in one segment: the client answers each while it processes that one read.
        byte[][] data = [[1, 1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2, 2], [3, 3, 3, 3, 3, 3, 3, 3]];
        var before = server.DataSegmentsIn();
        await server.SendRawAsync(FrameBytes.Concat([.. data.Select(d => FrameBytes.Frame(Http2FrameType.Ping, 0, 0, d))]));
        var expected = FrameBytes.Concat([.. data.Select(d => FrameBytes.Frame(Http2FrameType.Ping, 0x1, 0, d))]);
        var received = await server.ReceiveExactlyAsync(expected.Length);

        // The three ACKs came in one segment: one send.
        Assert.Equal(1u, server.DataSegmentsIn() - before);
        Assert.Equal(expected, received);
    }
}

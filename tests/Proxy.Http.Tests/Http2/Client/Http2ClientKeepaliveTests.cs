using System.Buffers.Binary;
using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Text;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>
/// Keepalive PINGs of <see cref="Http2ClientConnection"/> against a hand-driven server (<see cref="RawH2Server"/>), on
/// the real clock with short intervals (no fake time provider is referenced by the test projects).
/// </summary>
public sealed class Http2ClientKeepaliveTests
{
    private static Http2ClientOptions Keepalive(int intervalMs, int timeoutMs) => new()
    {
        KeepaliveInterval = TimeSpan.FromMilliseconds(intervalMs),
        KeepaliveTimeout = TimeSpan.FromMilliseconds(timeoutMs),
    };

    private static async Task<(Http2ClientConnection Connection, ClientTransport Transport)> ConnectAsync(RawH2Server server, Http2ClientOptions options)
    {
        var connecting = ClientTransport.ConnectAsync(server.EndPoint, options);
        await server.AcceptAsync();
        var result = await connecting;
        await server.HandshakeAsync();
        Assert.True(await result.Connection.PeerSettingsReceived.WaitAsync(Timeouts.Short));
        return result;
    }

    [Fact]
    public async Task Keepalive_ServerAnswersPings_ConnectionKeptAcrossSeveralIntervals()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server, Keepalive(intervalMs: 100, timeoutMs: 5000));
        using var _ = transport;
        await using var __ = connection;

        var opaque = new List<ulong>();
        var elapsed = Stopwatch.StartNew();
        for (var i = 0; i < 4; i++)
        {
            var ping = await server.ReadUntilAsync(H2Frame.Ping);
            Assert.Equal(0, ping.Flags & 0x1);
            Assert.Equal(0u, ping.StreamId);
            Assert.Equal(8, ping.Payload.Length);
            opaque.Add(BinaryPrimitives.ReadUInt64BigEndian(ping.Payload));
            await server.SendAsync(H2Frame.Ping, 0x1, 0, ping.Payload);
        }

        // An ACK brings the next PING one interval later (not a whole timeout later): 4 x 100 ms, with room for a busy machine.
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(3), $"4 PINGs took {elapsed.Elapsed.TotalMilliseconds} ms");

        // Each PING carries its own opaque data; every ACK but maybe the last was seen before the next PING left.
        Assert.Equal(4, opaque.Distinct().Count());
        Assert.True(connection.KeepalivePingAcks >= 3, $"acks: {connection.KeepalivePingAcks}");
        Assert.False(connection.KeepaliveTimedOut);
        Assert.False(connection.IsGoingAway);
        Assert.True(connection.CanOpenStream);
    }

    [Fact]
    public async Task Keepalive_ServerStopsAnswering_ClosedAfterIntervalPlusTimeout_OpenStreamEndsConnectionLost()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server, Keepalive(intervalMs: 150, timeoutMs: 300));
        using var _ = transport;
        await using var __ = connection;
        var silentSince = Stopwatch.StartNew();

        Assert.True(connection.TryOpenStream(out var stream));
        using (stream)
        {
            using var head = ClientExchange.Request("GET", "/hangs");
            Assert.True(await stream.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));

            // The server reads everything (the request, the PING) and never answers. On a loaded machine the first
            // PING may leave before the request's HEADERS: both come before the GOAWAY.
            var skipped = new List<H2Frame>();
            var ping = await server.ReadUntilAsync(H2Frame.Ping, skipped);
            Assert.Equal(0, ping.Flags & 0x1);
            var goAway = await server.ReadUntilAsync(H2Frame.GoAway, skipped);
            Assert.Contains(skipped, f => f.Type == H2Frame.Headers);

            await connection.Closed.WaitAsync(Timeouts.Short);
            var elapsed = silentSince.Elapsed;
            var end = await stream.Completion.WaitAsync(Timeouts.Short);

            Assert.True(elapsed >= TimeSpan.FromMilliseconds(150 + 300 - 20), $"closed after {elapsed.TotalMilliseconds} ms");
            Assert.True(connection.KeepaliveTimedOut);
            Assert.Equal(0u, goAway.ErrorCode);
            Assert.Contains("keepalive PING", Encoding.ASCII.GetString(goAway.Payload, 8, goAway.Payload.Length - 8), StringComparison.Ordinal);
            Assert.Equal(Http2StreamEndKind.ConnectionLost, end.Kind);
            Assert.Contains("keepalive PING", end.Reason, StringComparison.Ordinal);
            Assert.Contains("keepalive PING", connection.CloseReason, StringComparison.Ordinal);
            Assert.False(connection.CanOpenStream);
            Assert.Equal(0, connection.KeepalivePingAcks);
        }
    }

    [Fact]
    public async Task Keepalive_DataFlowing_NoPingSent_ThenSilence_PingSent()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server, Keepalive(intervalMs: 400, timeoutMs: 5000));
        using var _ = transport;
        await using var __ = connection;

        Assert.True(connection.TryOpenStream(out var stream));
        using (stream)
        {
            using var head = ClientExchange.Request("GET", "/stream");
            Assert.True(await stream.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
            var headers = await server.ReadUntilAsync(H2Frame.Headers);
            await server.SendHeadersAsync(headers.StreamId, false, (":status", "200"));

            // A DATA frame every 50 ms until 1.2 s (three intervals) have passed with no gap over 200 ms between two
            // frames: a stalled test thread (a loaded CI machine) restarts that window, and the keepalive may then
            // rightly have sent a PING, which the window's count leaves out. So does a PING in the window: the
            // receiving side can stall too (the event loop is shared with the tests running alongside), and a PING
            // is then right. A keepalive that pings although frames arrive never gets through a window.
            // The window is checked after each pause, so a PING sent during the last one restarts it too (checked
            // before the pause, the loop could end with a PING nobody looked at). The assertion is that some window
            // gets through before the overall limit.
            var window = Stopwatch.StartNew();
            var sinceLast = Stopwatch.StartNew();
            var overall = Stopwatch.StartNew();
            var sent = connection.KeepalivePingsSent;
            while (true)
            {
                Assert.True(overall.Elapsed < Timeouts.Short, "no 1.2 s window of flowing DATA without a stall or a PING");
                await server.SendAsync(H2Frame.Data, 0, headers.StreamId, Encoding.ASCII.GetBytes("tick"));
                await Task.Delay(50);
                var now = connection.KeepalivePingsSent;
                if (sinceLast.Elapsed > TimeSpan.FromMilliseconds(200) || now != sent)
                {
                    window.Restart();
                    sent = now;
                }

                sinceLast.Restart();
                if (window.Elapsed >= TimeSpan.FromMilliseconds(1200))
                {
                    break;
                }
            }

            // Once the server falls silent, the next interval brings a PING: the check above could fail. Pings sent
            // during a stall come first.
            await server.SendAsync(H2Frame.Data, 0x1, headers.StreamId, Encoding.ASCII.GetBytes("end"));
            H2Frame ping = default!;
            for (var i = 0; i <= sent; i++)
            {
                ping = await server.ReadUntilAsync(H2Frame.Ping);
            }

            Assert.Equal(0, ping.Flags & 0x1);
            Assert.Equal(sent + 1, connection.KeepalivePingsSent);
        }
    }

    [Fact]
    public async Task Keepalive_PeerStopsReading_WriterStuckInFlush_ConnectionStillCloses()
    {
        // In memory: the peer's side of the output pipe is never read, so once 64 KiB wait there the client's flush
        // blocks (as a socket to a vanished host does once its buffers are full) while holding the write lock.
        var toClient = new Pipe();
        var toServer = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024));
        var transport = new DuplexPipe(toClient.Reader, toServer.Writer);
        var connection = new Http2ClientConnection(transport, Keepalive(intervalMs: 100, timeoutMs: 300));
        try
        {
            await PeerStopsReadingAsync(connection, toClient.Writer);
        }
        finally
        {
            // Bounded: a close stuck behind the blocked flush must fail the test, not hang it.
            await connection.DisposeAsync().AsTask().WaitAsync(Timeouts.Short);
        }
    }

    private static async Task PeerStopsReadingAsync(Http2ClientConnection connection, PipeWriter toClient)
    {
        await connection.StartAsync().WaitAsync(Timeouts.Short);

        // Server SETTINGS with INITIAL_WINDOW_SIZE 2^31-1 and a connection WINDOW_UPDATE to the same: flow control never stops the body.
        var frames = new byte[9 + 6 + 9 + 4];
        frames[2] = 6;
        frames[3] = H2Frame.Settings;
        BinaryPrimitives.WriteUInt16BigEndian(frames.AsSpan(9), 0x4);
        BinaryPrimitives.WriteUInt32BigEndian(frames.AsSpan(11), int.MaxValue);
        frames[17] = 4;
        frames[18] = H2Frame.WindowUpdate;
        BinaryPrimitives.WriteUInt32BigEndian(frames.AsSpan(24), int.MaxValue - 65535);
        await toClient.WriteAsync(frames).AsTask().WaitAsync(Timeouts.Short);
        Assert.True(await connection.PeerSettingsReceived.WaitAsync(Timeouts.Short));

        Assert.True(connection.TryOpenStream(out var stream));
        using (stream)
        {
            using var head = ClientExchange.Request("POST", "/upload");
            Assert.True(await stream.WriteHeadersAsync(head, endStream: false).AsTask().WaitAsync(Timeouts.Short));
            var body = new byte[1024 * 1024];
            var writing = stream.WriteDataAsync(new ReadOnlySequence<byte>(body), endStream: true).AsTask();

            await connection.Closed.WaitAsync(Timeouts.Short);

            Assert.True(connection.KeepaliveTimedOut);
            Assert.False(await writing.WaitAsync(Timeouts.Short));
            Assert.Equal(Http2StreamEndKind.ConnectionLost, (await stream.Completion.WaitAsync(Timeouts.Short)).Kind);
            Assert.Equal(0, connection.KeepalivePingsSent);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}

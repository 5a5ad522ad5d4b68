using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Admin;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Lifecycle;

/// <summary>
/// The HTTP/2 drain on the wire, with a raw h2c client: GOAWAY(2^31-1) + PING first; a stream the client opens before it
/// answers the PING is still served; after the PING ACK, GOAWAY with the highest stream processed; a stream opened after
/// that is ignored; the streams in flight finish; then the proxy closes the connection (FIN) without a third GOAWAY.
/// </summary>
public sealed class Http2DrainTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private const byte Data = 0x0, Headers = 0x1, Settings = 0x4, Ping = 0x6, GoAway = 0x7;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4;
    private SlowUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await SlowUpstream.StartAsync();

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private sealed record Frame(byte Type, byte Flags, uint Stream, byte[] Payload);

    [Fact]
    public async Task Drain_Http2_TwoStepGoAway_InFlightStreamsFinish_LaterStreamIgnored_CleanClose()
    {
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = null,
            DrainTimeout = TimeSpan.FromSeconds(20),
            Services = [new ServiceConfig("web", [], [_upstream.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 }],
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "web") { Protocol = ListenerProtocol.Http }],
        };
        await using var host = new SidecarHost(config, NullLoggerFactory.Instance);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);

        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(host.AddressOf("edge")!).WaitAsync(Timeout);
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var frames = new FrameReader(stream);

        await stream.WriteAsync("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray());
        await WriteFrameAsync(stream, Settings, 0, 0, []);
        await WriteFrameAsync(stream, Headers, EndHeaders | EndStream, 1, Request("/work?ms=1000"));

        // The server's SETTINGS arrive first; once it has acknowledged ours it has read stream 1 too.
        await frames.UntilAsync(static f => f.Type == Settings && (f.Flags & Ack) != 0);
        host.Lifecycle.RequestStop(StopReason.Drain);

        var notice = await frames.UntilAsync(static f => f.Type == GoAway);
        Assert.Equal((0x7FFFFFFFu, 0u), ReadGoAway(notice));
        var ping = await frames.UntilAsync(static f => f.Type == Ping && (f.Flags & Ack) == 0);

        // Stream 3 leaves before the PING ACK: the client had not seen the GOAWAY yet, so it must be served.
        await WriteFrameAsync(stream, Headers, EndHeaders | EndStream, 3, Request("/work?ms=0"));
        await WriteFrameAsync(stream, Ping, Ack, 0, ping.Payload);
        var final = await frames.UntilAsync(static f => f.Type == GoAway);
        Assert.Equal((3u, 0u), ReadGoAway(final));

        // Stream 5 comes after the final GOAWAY: ignored (the client may retry it elsewhere).
        await WriteFrameAsync(stream, Headers, EndHeaders | EndStream, 5, Request("/work?ms=0"));

        var rest = await frames.ToEndAsync();
        Assert.DoesNotContain(rest, static f => f.Type == GoAway);
        Assert.DoesNotContain(rest, static f => f.Stream == 5);
        Assert.Contains(rest, static f => f.Type == Headers && f.Stream == 1);

        // Stream 3 (no wait upstream) may be answered before or after the final GOAWAY: served either way.
        Assert.Contains(frames.All, static f => f.Type == Headers && f.Stream == 3);
        Assert.Equal("done 1000", Body(frames.All, 1));
        Assert.Equal("done 0", Body(frames.All, 3));

        var result = await host.Stopped.WaitAsync(Timeout);
        Assert.Equal(0, result.Cut);
    }

    private static string Body(IEnumerable<Frame> frames, uint stream)
    {
        var data = frames.Where(f => f.Type == Data && f.Stream == stream).ToList();
        Assert.True(data.Count > 0 && (data[^1].Flags & EndStream) != 0, $"stream {stream} did not end");
        return string.Concat(data.Select(static f => Encoding.ASCII.GetString(f.Payload)));
    }

    private static (uint LastStream, uint Error) ReadGoAway(Frame frame)
        => (BinaryPrimitives.ReadUInt32BigEndian(frame.Payload) & 0x7FFFFFFF, BinaryPrimitives.ReadUInt32BigEndian(frame.Payload.AsSpan(4)));

    /// <summary>A GET as an HPACK block: indexed :method GET and :scheme http, literal (not indexed) :path and :authority.</summary>
    private static byte[] Request(string path)
    {
        var block = new List<byte> { 0x82, 0x86, 0x04, (byte)path.Length };
        block.AddRange(Encoding.ASCII.GetBytes(path));
        block.AddRange([0x01, 4]);
        block.AddRange("test"u8.ToArray());
        return [.. block];
    }

    private static async Task WriteFrameAsync(NetworkStream stream, byte type, byte flags, uint streamId, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, 9);
        await stream.WriteAsync(frame).AsTask().WaitAsync(Timeout);
    }

    private sealed class FrameReader(NetworkStream stream)
    {
        public List<Frame> All { get; } = [];

        /// <summary>Reads frames until one matches; null at the end of the connection.</summary>
        private async Task<Frame?> NextAsync()
        {
            var header = new byte[9];
            var read = 0;
            while (read < 9)
            {
                var n = await stream.ReadAsync(header.AsMemory(read)).AsTask().WaitAsync(Timeout);
                if (n == 0)
                {
                    Assert.Equal(0, read);
                    return null;
                }

                read += n;
            }

            var length = (header[0] << 16) | (header[1] << 8) | header[2];
            var payload = new byte[length];
            await stream.ReadExactlyAsync(payload).AsTask().WaitAsync(Timeout);
            var frame = new Frame(header[3], header[4], BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(5)) & 0x7FFFFFFF, payload);
            All.Add(frame);
            return frame;
        }

        public async Task<Frame> UntilAsync(Func<Frame, bool> match)
        {
            while (true)
            {
                var frame = await NextAsync() ?? throw new Xunit.Sdk.XunitException("the connection ended first");
                if (match(frame))
                {
                    return frame;
                }
            }
        }

        /// <summary>Every frame up to the end of the connection, which must be a clean close (FIN), not a reset.</summary>
        public async Task<List<Frame>> ToEndAsync()
        {
            var rest = new List<Frame>();
            while (await NextAsync() is { } frame)
            {
                rest.Add(frame);
            }

            return rest;
        }
    }
}

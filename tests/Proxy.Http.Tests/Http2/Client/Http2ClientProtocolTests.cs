using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>The client connection against hand-made frames from a raw TCP listener (what Kestrel would never send).</summary>
public sealed class Http2ClientProtocolTests
{
    private const ushort InitialWindowSize = 0x4;
    private const ushort MaxConcurrentStreams = 0x3;
    private const byte PushPromise = 5;

    private static async Task<(RawH2Server Server, Http2ClientConnection Connection, ClientTransport Transport)> StartAsync(params (ushort Id, uint Value)[] settings)
    {
        var server = new RawH2Server();
        var accept = server.AcceptAsync();
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        await accept;
        await server.HandshakeAsync(settings);
        return (server, connection, transport);
    }

    private static async Task<Http2ClientStream> OpenGetAsync(Http2ClientConnection connection)
    {
        Assert.True(connection.TryOpenStream(out var stream));
        using var head = ClientExchange.Request("GET", "/");
        Assert.True(await stream.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
        return stream;
    }

    [Fact]
    public async Task Start_Handshake_SendsPrefaceSettingsAndConnectionWindowUpdate()
    {
        var server = new RawH2Server();
        await using var _ = server;
        var accept = server.AcceptAsync();
        var options = new Http2ClientOptions { InitialStreamWindowSize = 100_000, InitialConnectionWindowSize = 1_000_000, MaxHeaderListSize = 12_345, HeaderTableSize = 2048 };
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint, options);
        using var __ = transport;
        await using var ___ = connection;
        await accept;

        var settings = await server.ReadFrameAsync();
        var update = await server.ReadFrameAsync();

        Assert.Equal(H2Frame.Settings, settings!.Type);
        var values = new Dictionary<ushort, uint>();
        for (var i = 0; i < settings.Payload.Length; i += 6)
        {
            values[BinaryPrimitives.ReadUInt16BigEndian(settings.Payload.AsSpan(i))] = BinaryPrimitives.ReadUInt32BigEndian(settings.Payload.AsSpan(i + 2));
        }

        Assert.Equal(0u, values[0x2]);
        Assert.Equal(100_000u, values[0x4]);
        Assert.Equal(12_345u, values[0x6]);
        Assert.Equal(2048u, values[0x1]);
        Assert.Equal(H2Frame.WindowUpdate, update!.Type);
        Assert.Equal(0u, update.StreamId);
        Assert.Equal(1_000_000u - 65_535u, BinaryPrimitives.ReadUInt32BigEndian(update.Payload));
    }

    [Fact]
    public async Task PushPromise_FromServer_GoAwayProtocolErrorAndStreamsFail()
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        var block = H2TestConnection.EncodeBlock([(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/pushed")]);
        await server.SendAsync(PushPromise, 0x4, headers.StreamId, [0, 0, 0, 2, .. block]);
        var goAway = await server.ReadUntilAsync(H2Frame.GoAway);
        var end = await stream.Completion.WaitAsync(Timeouts.Short);

        Assert.Equal((uint)Http2ErrorCode.ProtocolError, goAway.ErrorCode);
        Assert.Equal(Http2StreamEndKind.ConnectionLost, end.Kind);
        Assert.Equal(Http2ErrorCode.ProtocolError, end.ErrorCode);
        Assert.Null(await server.ReadFrameAsync());
        await connection.Closed.WaitAsync(Timeouts.Short);
        Assert.False(connection.TryOpenStream(out var none));
    }

    public static TheoryData<string, string[]> MalformedHeads => new()
    {
        { "uppercase name", [":status", "200", "Content-Type", "text/plain"] },
        { "connection-specific field", [":status", "200", "connection", "close"] },
        { "missing :status", ["content-type", "text/plain"] },
        { "two-digit :status", [":status", "20"] },
        { "request pseudo-header", [":status", "200", ":path", "/"] },
        { "pseudo-header after field", ["server", "x", ":status", "200"] },
        { "duplicate :status", [":status", "200", ":status", "204"] },
        { "value with CR", [":status", "200", "x-a", "b\rc"] },
        { "101 in HTTP/2", [":status", "101"] },
        { "te other than trailers", [":status", "200", "te", "gzip"] },
    };

    [Theory]
    [MemberData(nameof(MalformedHeads))]
    public async Task MalformedResponseHead_FromServer_RstStreamProtocolErrorAndConnectionLives(string reason, string[] flat)
    {
        Assert.NotNull(reason);
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        var fields = Enumerable.Range(0, flat.Length / 2).Select(i => (flat[2 * i], flat[(2 * i) + 1])).ToArray();

        await server.SendHeadersAsync(headers.StreamId, endStream: true, fields);
        var rst = await server.ReadUntilAsync(H2Frame.RstStream);
        var end = await stream.Completion.WaitAsync(Timeouts.Short);
        var read = await Assert.ThrowsAsync<Http2StreamAbortedException>(() => stream.ReadResponseHeadAsync().AsTask().WaitAsync(Timeouts.Short));

        Assert.Equal(headers.StreamId, rst.StreamId);
        Assert.Equal((uint)Http2ErrorCode.ProtocolError, rst.ErrorCode);
        Assert.Equal(Http2StreamEndKind.ResetLocally, end.Kind);
        Assert.Equal(Http2ErrorCode.ProtocolError, end.ErrorCode);
        Assert.Equal(end, read.End);
        stream.Dispose();

        // The connection lives: the next stream gets a normal answer.
        var next = await OpenGetAsync(connection);
        var nextHeaders = await server.ReadUntilAsync(H2Frame.Headers);
        Assert.Equal(headers.StreamId + 2, nextHeaders.StreamId);
        await server.SendHeadersAsync(nextHeaders.StreamId, endStream: true, (":status", "204"));
        var response = await ClientExchange.ReadResponseAsync(next);
        Assert.Equal(204, response.Status);
        Assert.True(response.End.IsCompleted);
        next.Dispose();
    }

    [Fact]
    public async Task MalformedTrailers_PseudoHeader_RstStreamProtocolError()
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "200"));
        await server.SendAsync(H2Frame.Data, 0, headers.StreamId, "abc"u8.ToArray());
        await server.SendHeadersAsync(headers.StreamId, endStream: true, (":status", "200"));
        var rst = await server.ReadUntilAsync(H2Frame.RstStream);
        var end = await stream.Completion.WaitAsync(Timeouts.Short);

        Assert.Equal((uint)Http2ErrorCode.ProtocolError, rst.ErrorCode);
        Assert.Equal(Http2StreamEndKind.ResetLocally, end.Kind);
        stream.Dispose();
    }

    [Fact]
    public async Task InterimResponses_BeforeFinal_DeliveredSeparatelyInOrder()
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "100"));
        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "103"), ("link", "</a.css>; rel=preload"));
        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "200"), ("content-type", "text/plain"));
        await server.SendAsync(H2Frame.Data, 0x1, headers.StreamId, "body"u8.ToArray());
        var response = await ClientExchange.ReadResponseAsync(stream);
        stream.Dispose();

        Assert.Equal([100, 103], response.Interim);
        Assert.Equal(200, response.Status);
        Assert.Equal([("content-type", "text/plain")], response.Fields);
        Assert.Equal("body", Encoding.ASCII.GetString(response.Body));
    }

    [Fact]
    public async Task PeerInitialWindowSize_Small_RequestBodyWaitsForWindowUpdate()
    {
        var (server, connection, transport) = await StartAsync((InitialWindowSize, 10));
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        // A PING round trip: the client has applied the SETTINGS before it answers a later frame.
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        await server.ReadUntilAsync(H2Frame.Ping);
        Assert.True(connection.TryOpenStream(out var stream));
        using var head = ClientExchange.Request("POST", "/upload");
        Assert.True(await stream.WriteHeadersAsync(head, endStream: false).AsTask().WaitAsync(Timeouts.Short));
        var body = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();

        var write = stream.WriteDataAsync(new ReadOnlySequence<byte>(body), endStream: true).AsTask();
        var first = await server.ReadUntilAsync(H2Frame.Data);
        // Another PING round trip: nothing more may be sent while the window is closed.
        await server.SendAsync(H2Frame.Ping, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]);
        var between = new List<H2Frame>();
        await server.ReadUntilAsync(H2Frame.Ping, between);

        Assert.Equal(10, first.Payload.Length);
        Assert.False(first.EndStream);
        Assert.DoesNotContain(between, f => f.Type == H2Frame.Data);
        Assert.False(write.IsCompleted);

        await server.SendAsync(H2Frame.WindowUpdate, 0, first.StreamId, FrameBytes.U32(90));
        var rest = await server.ReadUntilAsync(H2Frame.Data);
        Assert.True(await write.WaitAsync(Timeouts.Short));
        Assert.Equal(90, rest.Payload.Length);
        Assert.True(rest.EndStream);
        Assert.Equal(body, first.Payload.Concat(rest.Payload));
        stream.Dispose();
    }

    [Fact]
    public async Task PeerInitialWindowSize_ChangedMidStream_DeltaAppliedToOpenStream()
    {
        var (server, connection, transport) = await StartAsync((InitialWindowSize, 10));
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        await server.ReadUntilAsync(H2Frame.Ping);
        Assert.True(connection.TryOpenStream(out var stream));
        using var head = ClientExchange.Request("POST", "/upload");
        Assert.True(await stream.WriteHeadersAsync(head, endStream: false).AsTask().WaitAsync(Timeouts.Short));
        var write = stream.WriteDataAsync(new ReadOnlySequence<byte>(new byte[50]), endStream: true).AsTask();
        var first = await server.ReadUntilAsync(H2Frame.Data);
        Assert.Equal(10, first.Payload.Length);

        // 10 -> 50: the open stream's window grows by 40 (RFC 9113 §6.9.2), exactly the rest of the body.
        await server.SendAsync(H2Frame.Settings, 0, 0, FrameBytes.Setting(InitialWindowSize, 50));
        var rest = await server.ReadUntilAsync(H2Frame.Data);

        Assert.Equal(40, rest.Payload.Length);
        Assert.True(rest.EndStream);
        Assert.True(await write.WaitAsync(Timeouts.Short));
        stream.Dispose();
    }

    [Fact]
    public async Task PeerMaxConcurrentStreams_One_SecondOpenRefusedLocally()
    {
        var (server, connection, transport) = await StartAsync((MaxConcurrentStreams, 1));
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        await server.ReadUntilAsync(H2Frame.Ping);

        Assert.True(connection.TryOpenStream(out var stream));
        Assert.False(connection.TryOpenStream(out var none));
        stream.Dispose();
        Assert.True(connection.TryOpenStream(out var again));
        again.Dispose();
    }

    [Fact]
    public async Task GoAway_LastStreamIdBelowOpenStream_StreamRefusedRetryable()
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var first = await OpenGetAsync(connection);
        var second = await OpenGetAsync(connection);
        var h1 = await server.ReadUntilAsync(H2Frame.Headers);
        var h3 = await server.ReadUntilAsync(H2Frame.Headers);

        await server.SendAsync(H2Frame.GoAway, 0, 0, [.. FrameBytes.U32(h1.StreamId), .. FrameBytes.U32(0)]);
        var refused = await second.Completion.WaitAsync(Timeouts.Short);
        Assert.Equal(Http2StreamEndKind.Refused, refused.Kind);
        Assert.True(refused.IsRetryable);
        Assert.Equal(3u, h3.StreamId);
        Assert.False(connection.TryOpenStream(out var none));

        await server.SendHeadersAsync(h1.StreamId, endStream: true, (":status", "200"));
        var response = await ClientExchange.ReadResponseAsync(first);
        Assert.True(response.End.IsCompleted);
        first.Dispose();
        second.Dispose();
        // The last stream done: the client closes with GOAWAY NO_ERROR.
        var goAway = await server.ReadUntilAsync(H2Frame.GoAway);
        Assert.Equal((uint)Http2ErrorCode.NoError, goAway.ErrorCode);
        await connection.Closed.WaitAsync(Timeouts.Short);
    }

    [Fact]
    public async Task RstStreamRefused_FromServer_StreamRefusedRetryable()
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        await server.SendAsync(H2Frame.RstStream, 0, headers.StreamId, FrameBytes.U32((uint)Http2ErrorCode.RefusedStream));
        var end = await stream.Completion.WaitAsync(Timeouts.Short);

        Assert.Equal(Http2StreamEndKind.Refused, end.Kind);
        Assert.True(end.IsRetryable);
        Assert.Equal(0, connection.ActiveStreams);
        stream.Dispose();
    }

    [Fact]
    public async Task ResponseBody_ConsumedByCaller_CreditedWithWindowUpdates()
    {
        var options = new Http2ClientOptions { InitialStreamWindowSize = 1000, InitialConnectionWindowSize = 65_535 };
        var server = new RawH2Server();
        await using var _ = server;
        var accept = server.AcceptAsync();
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint, options);
        using var __ = transport;
        await using var ___ = connection;
        await accept;
        await server.HandshakeAsync();
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "200"));

        // The whole stream window, unread: no WINDOW_UPDATE may come for it yet.
        await server.SendAsync(H2Frame.Data, 0, headers.StreamId, new byte[1000]);
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        var before = new List<H2Frame>();
        await server.ReadUntilAsync(H2Frame.Ping, before);
        Assert.DoesNotContain(before, f => f.Type == H2Frame.WindowUpdate && f.StreamId == headers.StreamId);

        var read = await stream.ResponseBody.ReadAsync().AsTask().WaitAsync(Timeouts.Short);
        Assert.Equal(1000, read.Buffer.Length);
        stream.ResponseBody.AdvanceTo(read.Buffer.GetPosition(600));
        var update = await server.ReadUntilAsync(H2Frame.WindowUpdate);
        Assert.Equal(headers.StreamId, update.StreamId);
        Assert.Equal(600u, BinaryPrimitives.ReadUInt32BigEndian(update.Payload));

        // Past the window is a stream FLOW_CONTROL_ERROR: 400 unread + 600 credited = 1000 allowed, 1001 is too much.
        await server.SendAsync(H2Frame.Data, 0, headers.StreamId, new byte[1001]);
        var rst = await server.ReadUntilAsync(H2Frame.RstStream);
        Assert.Equal((uint)Http2ErrorCode.FlowControlError, rst.ErrorCode);
        stream.Dispose();
    }

    [Theory]
    [InlineData("5", "abcdef", true)]
    [InlineData("10", "abcdef", true)]
    [InlineData("6", "abcdef", false)]
    public async Task ContentLength_DataMismatch_RstStreamProtocolError(string contentLength, string body, bool malformed)
    {
        var (server, connection, transport) = await StartAsync();
        await using var _ = server;
        using var __ = transport;
        await using var ___ = connection;
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "200"), ("content-length", contentLength));
        await server.SendAsync(H2Frame.Data, 0x1, headers.StreamId, Encoding.ASCII.GetBytes(body));
        var end = await stream.Completion.WaitAsync(Timeouts.Short);

        if (malformed)
        {
            var rst = await server.ReadUntilAsync(H2Frame.RstStream);
            Assert.Equal((uint)Http2ErrorCode.ProtocolError, rst.ErrorCode);
            Assert.Equal(Http2StreamEndKind.ResetLocally, end.Kind);
        }
        else
        {
            Assert.True(end.IsCompleted);
        }

        stream.Dispose();
    }

    [Fact]
    public async Task Dispose_WithUnreadBody_RstCancelAndUnreadBytesCreditedToConnection()
    {
        var options = new Http2ClientOptions { InitialStreamWindowSize = 40_000, InitialConnectionWindowSize = 65_535 };
        var server = new RawH2Server();
        await using var _ = server;
        var accept = server.AcceptAsync();
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint, options);
        using var __ = transport;
        await using var ___ = connection;
        await accept;
        await server.HandshakeAsync();
        var stream = await OpenGetAsync(connection);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await server.SendHeadersAsync(headers.StreamId, endStream: false, (":status", "200"));
        for (var i = 0; i < 3; i++)
        {
            await server.SendAsync(H2Frame.Data, 0, headers.StreamId, new byte[12_000]);
        }

        using var head = await stream.ReadResponseHeadAsync().AsTask().WaitAsync(Timeouts.Short);
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        await server.ReadUntilAsync(H2Frame.Ping);

        stream.Dispose();
        var frames = new List<H2Frame>();
        var update = await server.ReadUntilAsync(H2Frame.WindowUpdate, frames);

        Assert.Contains(frames, f => f.Type == H2Frame.RstStream && f.StreamId == headers.StreamId && f.ErrorCode == (uint)Http2ErrorCode.Cancel);
        Assert.Equal(0u, update.StreamId);
        Assert.Equal(36_000u, BinaryPrimitives.ReadUInt32BigEndian(update.Payload));
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Addresses;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Server;
using Proxy.Http.Tests.Http2.Upstream;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>
/// A final response head with more frames read behind it wakes its reader only after them (or at its END_STREAM):
/// a small response whose DATA came in the same read as its HEADERS reaches the reader, and through the upstream
/// exchange the forwarder, in one piece. The observers here run inline, at the moment of the wake.
/// </summary>
public sealed class Http2ClientHeadWakeTests
{
    private static readonly byte[] Hello = "hello"u8.ToArray();

    private static byte[] HeadersFrame(uint streamId, bool endStream, params (string Name, string Value)[] fields) =>
        FrameBytes.Frame(Http2FrameType.Headers, (byte)(0x4 | (endStream ? 0x1 : 0)), streamId, H2TestConnection.EncodeBlock(fields));

    private static async Task<(Http2ClientConnection Connection, ClientTransport Transport)> ConnectAsync(RawH2Server server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(server.EndPoint).WaitAsync(Timeouts.Short);
        var transport = new ClientTransport(socket);
        var connection = new Http2ClientConnection(transport);
        var start = connection.StartAsync();
        await server.AcceptAsync();
        await server.HandshakeAsync();
        await start.WaitAsync(Timeouts.Short);
        return (connection, transport);
    }

    /// <summary>A GET on a new stream; the server has read its HEADERS.</summary>
    private static async Task<(Http2ClientStream Stream, H2Frame Headers)> GetAsync(Http2ClientConnection connection, RawH2Server server, string path)
    {
        Assert.True(connection.TryOpenStream(out var stream));
        using var request = ClientExchange.Request("GET", path);
        Assert.True(await stream.WriteHeadersAsync(request, endStream: true).AsTask().WaitAsync(Timeouts.Short));
        return (stream, await server.ReadUntilAsync(H2Frame.Headers));
    }

    /// <summary>Observes the head read's completion inline (no context captured) and what the body holds at that moment.</summary>
    private static Task<(long Buffered, bool Completed)> BodyAtWake(Http2ClientStream stream, ValueTask<Http2ClientResponseHead> headRead)
    {
        var seen = new TaskCompletionSource<(long, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var awaiter = headRead.ConfigureAwait(false).GetAwaiter();
        awaiter.UnsafeOnCompleted(() =>
        {
            try
            {
                using var head = awaiter.GetResult();
                var body = stream.ResponseBody;
                if (body.TryRead(out var result))
                {
                    body.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                    seen.SetResult((result.Buffer.Length, result.IsCompleted));
                }
                else
                {
                    seen.SetResult((0, false));
                }
            }
            catch (Exception e)
            {
                seen.SetException(e);
            }
        });
        return seen.Task;
    }

    [Fact]
    public async Task HeadersAndDataInOneRead_TheHeadReaderWakesWithTheWholeBodyThere()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server);
        await using var _ = connection;
        using var __ = transport;
        var (stream, headers) = await GetAsync(connection, server, "/small");
        using (stream)
        {
            var atWake = BodyAtWake(stream, stream.ReadResponseHeadAsync());

            await server.SendRawAsync(FrameBytes.Concat(
                HeadersFrame(headers.StreamId, false, (":status", "200"), ("content-length", "5")),
                FrameBytes.Frame(Http2FrameType.Data, 0x1, headers.StreamId, Hello)));

            // Woken at HEADERS, the reader would find no body yet.
            Assert.Equal((5L, true), await atWake.WaitAsync(Timeouts.Short));
        }
    }

    [Fact]
    public async Task HeadersFollowedByOtherFramesOnly_TheHeadReaderWakesAtTheEndOfThatRead()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server);
        await using var _ = connection;
        using var __ = transport;
        var (stream, headers) = await GetAsync(connection, server, "/slow-body");
        using (stream)
        {
            var atWake = BodyAtWake(stream, stream.ReadResponseHeadAsync());

            // The head, then a PING in the same read: no DATA follows until the head has been seen.
            await server.SendRawAsync(FrameBytes.Concat(
                HeadersFrame(headers.StreamId, false, (":status", "200")),
                FrameBytes.Frame(Http2FrameType.Ping, 0, 0, new byte[8])));

            Assert.Equal((0L, false), await atWake.WaitAsync(Timeouts.Short));
            await server.SendAsync(H2Frame.Data, 0x1, headers.StreamId, Hello);
            var body = await ReadAllAsync(stream.ResponseBody);
            Assert.Equal("hello", body);
        }
    }

    [Fact]
    public async Task HeadersThenResetInOneRead_TheHeadIsHandedAndTheBodyFailsWithTheReset()
    {
        await using var server = new RawH2Server();
        var (connection, transport) = await ConnectAsync(server);
        await using var _ = connection;
        using var __ = transport;
        var (stream, headers) = await GetAsync(connection, server, "/reset");
        using (stream)
        {
            var headRead = stream.ReadResponseHeadAsync().AsTask();

            await server.SendRawAsync(FrameBytes.Concat(
                HeadersFrame(headers.StreamId, false, (":status", "200")),
                FrameBytes.Frame(Http2FrameType.RstStream, 0, headers.StreamId, FrameBytes.U32((uint)Http2ErrorCode.InternalError))));

            using var head = await headRead.WaitAsync(Timeouts.Short);
            Assert.Equal(200, head.StatusCode);
            var failure = await Assert.ThrowsAsync<Http2StreamAbortedException>(() => ReadAllAsync(stream.ResponseBody));
            Assert.Equal(Http2ErrorCode.InternalError, failure.End.ErrorCode);
        }
    }

    [Fact]
    public async Task Exchange_SmallResponseInOneRead_ReachesTheForwarderSideInOneFlush()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var renting = pool.RentAsync(new UpstreamAddress(server.EndPoint), CancellationToken.None).AsTask();
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var rent = await renting.WaitAsync(Timeouts.Short);
        Assert.True(rent.IsSuccess);
        var connection = rent.Connection!;
        var upstream = connection.Connection.Transport;
        upstream.Output.Write("GET /small HTTP/1.1\r\nHost: web\r\n\r\n"u8);
        await upstream.Output.FlushAsync().AsTask().WaitAsync(Timeouts.Short);
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        // What the forwarder's first read returns, seen inline at the flush that wakes it.
        var firstRead = ReadAtWake(upstream.Input, upstream.Input.ReadAsync());

        await server.SendRawAsync(FrameBytes.Concat(
            HeadersFrame(headers.StreamId, false, (":status", "200"), ("content-length", "5")),
            FrameBytes.Frame(Http2FrameType.Data, 0x1, headers.StreamId, Hello)));

        // Head and body together (woken at HEADERS, the first read held the head alone).
        var text = await firstRead.WaitAsync(Timeouts.Short);
        Assert.StartsWith("HTTP/1.1 200 ", text, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nhello", text, StringComparison.Ordinal);
        pool.Return(connection, reusable: true);
    }

    /// <summary>What a pipe read returns, observed inline at its completion (no context captured).</summary>
    private static Task<string> ReadAtWake(PipeReader input, ValueTask<ReadResult> read)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var awaiter = read.ConfigureAwait(false).GetAwaiter();
        awaiter.UnsafeOnCompleted(() =>
        {
            try
            {
                var result = awaiter.GetResult();
                seen.SetResult(Encoding.ASCII.GetString(result.Buffer.ToArray()));
                input.AdvanceTo(result.Buffer.End);
            }
            catch (Exception e)
            {
                seen.SetException(e);
            }
        });
        return seen.Task;
    }

    private static async Task<string> ReadAllAsync(PipeReader reader)
    {
        var text = new StringBuilder();
        while (true)
        {
            var result = await reader.ReadAsync().AsTask().WaitAsync(Timeouts.Short);
            text.Append(Encoding.ASCII.GetString(result.Buffer.ToArray()));
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return text.ToString();
            }
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Proxy.Http.Http2.Client;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>A Kestrel app serving HTTP/2 only (h2c with prior knowledge) on 127.0.0.1:0: the real server for client tests.</summary>
internal sealed class KestrelH2Upstream : IAsyncDisposable
{
    private readonly WebApplication _app;
    private bool _stopped;

    private KestrelH2Upstream(WebApplication app, IPEndPoint endPoint)
    {
        _app = app;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<KestrelH2Upstream> StartAsync(RequestDelegate handler, int maxStreamsPerConnection = 100)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2);
            o.Limits.MaxRequestBodySize = null;
            o.Limits.Http2.MaxStreamsPerConnection = maxStreamsPerConnection;
        });
        var app = builder.Build();
        app.Run(handler);
        await app.StartAsync().WaitAsync(Timeouts.Short);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new KestrelH2Upstream(app, new IPEndPoint(IPAddress.Loopback, new Uri(address).Port));
    }

    /// <summary>Graceful stop: Kestrel sends GOAWAY and waits for in-flight streams.</summary>
    public Task StopAsync()
    {
        _stopped = true;
        return _app.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopped)
        {
            await _app.StopAsync().WaitAsync(Timeouts.Short);
        }

        await _app.DisposeAsync();
    }
}

/// <summary>A socket as an <see cref="IDuplexPipe"/> (stream-backed pipes), and a connected, started client connection.</summary>
internal sealed class ClientTransport(Socket socket) : IDuplexPipe, IDisposable
{
    private readonly NetworkStream _stream = new(socket, ownsSocket: true);
    private PipeReader? _input;
    private PipeWriter? _output;

    public PipeReader Input => _input ??= PipeReader.Create(_stream);

    public PipeWriter Output => _output ??= PipeWriter.Create(_stream);

    public static async Task<(Http2ClientConnection Connection, ClientTransport Transport)> ConnectAsync(IPEndPoint endPoint, Http2ClientOptions? options = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(Timeouts.Short);
        var transport = new ClientTransport(socket);
        var connection = new Http2ClientConnection(transport, options);
        await connection.StartAsync().WaitAsync(Timeouts.Short);
        return (connection, transport);
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>What one exchange produced, copied out.</summary>
internal sealed record ClientResponse(int Status, List<(string Name, string Value)> Fields, byte[] Body, List<(string Name, string Value)>? Trailers, Http2StreamEnd End, List<int> Interim);

internal static class ClientExchange
{
    public static Http2FieldList Fields(params (string Name, string Value)[] fields)
    {
        var list = new Http2FieldList();
        foreach (var (name, value) in fields)
        {
            list.Add(Encoding.ASCII.GetBytes(name), Encoding.ASCII.GetBytes(value));
        }

        return list;
    }

    public static Http2FieldList Request(string method, string path, params (string Name, string Value)[] extra) =>
        Fields([(":method", method), (":scheme", "http"), (":authority", "test"), (":path", path), .. extra]);

    public static List<(string Name, string Value)> ToList(Http2FieldList fields)
    {
        var list = new List<(string, string)>();
        for (var i = 0; i < fields.Count; i++)
        {
            list.Add((Encoding.ASCII.GetString(fields.GetName(i)), Encoding.ASCII.GetString(fields.GetValue(i))));
        }

        return list;
    }

    /// <summary>Sends a request (body in pieces of <paramref name="chunk"/> bytes) while reading the response, as an adapter would.</summary>
    public static async Task<ClientResponse> SendAsync(Http2ClientConnection connection, string method, string path, byte[]? body = null, int chunk = 16 * 1024, params (string Name, string Value)[] extra)
    {
        Assert.True(connection.TryOpenStream(out var stream));
        using (stream)
        {
            using var head = Request(method, path, extra);
            Assert.True(await stream.WriteHeadersAsync(head, endStream: body is null).AsTask().WaitAsync(Timeouts.Short));
            var send = body is null ? Task.CompletedTask : SendBodyAsync(stream, body, chunk);
            var response = await ReadResponseAsync(stream);
            await send.WaitAsync(Timeouts.Bulk);
            return response;
        }
    }

    private static async Task SendBodyAsync(Http2ClientStream stream, byte[] body, int chunk)
    {
        for (var offset = 0; offset < body.Length || offset == 0; offset += chunk)
        {
            var size = Math.Min(chunk, body.Length - offset);
            var last = offset + size >= body.Length;
            Assert.True(await stream.WriteDataAsync(new ReadOnlySequence<byte>(body, offset, size), last).AsTask().WaitAsync(Timeouts.Bulk));
            if (last)
            {
                return;
            }
        }
    }

    public static async Task<ClientResponse> ReadResponseAsync(Http2ClientStream stream)
    {
        var interim = new List<int>();
        Http2ClientResponseHead head;
        while (true)
        {
            head = await stream.ReadResponseHeadAsync().AsTask().WaitAsync(Timeouts.Short);
            if (!head.IsInformational)
            {
                break;
            }

            interim.Add(head.StatusCode);
            head.Dispose();
        }

        var fields = ToList(head.Fields);
        var status = head.StatusCode;
        head.Dispose();
        var body = new MemoryStream();
        while (true)
        {
            var result = await stream.ResponseBody.ReadAsync().AsTask().WaitAsync(Timeouts.Bulk);
            foreach (var segment in result.Buffer)
            {
                body.Write(segment.Span);
            }

            stream.ResponseBody.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        var end = await stream.Completion.WaitAsync(Timeouts.Short);
        return new ClientResponse(status, fields, body.ToArray(), stream.Trailers is { } t ? ToList(t) : null, end, interim);
    }
}

/// <summary>
/// A raw HTTP/2 "server" on 127.0.0.1:0 for hand-made frames: accepts one connection, checks the client preface,
/// then the test reads the client's frames and writes its own.
/// </summary>
internal sealed class RawH2Server : IAsyncDisposable
{
    private readonly Socket _listener;
    private Socket? _socket;
    private NetworkStream? _stream;

    public RawH2Server()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>Accepts the client and reads its preface.</summary>
    public async Task AcceptAsync()
    {
        _socket = await _listener.AcceptAsync().WaitAsync(Timeouts.Short);
        _socket.NoDelay = true;
        _stream = new NetworkStream(_socket, ownsSocket: true);
        var preface = new byte[24];
        await _stream.ReadExactlyAsync(preface).AsTask().WaitAsync(Timeouts.Short);
        Assert.Equal(H2TestConnection.Preface, preface);
    }

    public Task SendAsync(byte type, byte flags, uint streamId, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, 9);
        return _stream!.WriteAsync(frame).AsTask().WaitAsync(Timeouts.Short);
    }

    /// <summary>Writes <paramref name="bytes"/> (e.g. several frames) in one send.</summary>
    public Task SendRawAsync(byte[] bytes) => _stream!.WriteAsync(bytes).AsTask().WaitAsync(Timeouts.Short);

    /// <summary>Reads exactly <paramref name="count"/> bytes.</summary>
    public async Task<byte[]> ReceiveExactlyAsync(int count)
    {
        var buffer = new byte[count];
        await _stream!.ReadExactlyAsync(buffer).AsTask().WaitAsync(Timeouts.Short);
        return buffer;
    }

    /// <summary>
    /// TCP segments with data that this socket has received so far (Linux <c>TCP_INFO</c> <c>tcpi_data_segs_in</c>): on
    /// loopback with TCP_NODELAY each send of the client is one segment, so this counts the client's sends.
    /// </summary>
    public uint DataSegmentsIn()
    {
        const int IpProtoTcp = 6;
        const int TcpInfo = 11;
        const int DataSegsInOffset = 152;
        var info = new byte[256];
        var length = _socket!.GetRawSocketOption(IpProtoTcp, TcpInfo, info);
        Assert.True(length >= DataSegsInOffset + 4, $"TCP_INFO too short ({length} bytes) for tcpi_data_segs_in");
        return BinaryPrimitives.ReadUInt32LittleEndian(info.AsSpan(DataSegsInOffset));
    }

    public Task SendHeadersAsync(uint streamId, bool endStream, params (string Name, string Value)[] fields) =>
        SendAsync(H2Frame.Headers, (byte)(0x4 | (endStream ? 0x1 : 0)), streamId, H2TestConnection.EncodeBlock(fields));

    /// <summary>The next frame from the client, or null at the end of the connection.</summary>
    public async Task<H2Frame?> ReadFrameAsync()
    {
        var header = new byte[9];
        var read = 0;
        while (read < 9)
        {
            var n = await _stream!.ReadAsync(header.AsMemory(read)).AsTask().WaitAsync(Timeouts.Short);
            if (n == 0)
            {
                return null;
            }

            read += n;
        }

        var length = (header[0] << 16) | (header[1] << 8) | header[2];
        var payload = new byte[length];
        await _stream!.ReadExactlyAsync(payload).AsTask().WaitAsync(Timeouts.Short);
        return new H2Frame(header[3], header[4], BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(5)) & 0x7FFFFFFF, payload);
    }

    /// <summary>Reads frames until one of <paramref name="type"/> (others are collected into <paramref name="skipped"/>).</summary>
    public async Task<H2Frame> ReadUntilAsync(byte type, List<H2Frame>? skipped = null)
    {
        while (true)
        {
            var frame = await ReadFrameAsync().ConfigureAwait(false) ?? throw new InvalidOperationException($"connection ended before a frame of type {type}");
            if (frame.Type == type)
            {
                return frame;
            }

            skipped?.Add(frame);
        }
    }

    /// <summary>Server SETTINGS (given entries) and the ACK of the client's SETTINGS.</summary>
    public async Task HandshakeAsync(params (ushort Id, uint Value)[] settings)
    {
        var payload = settings.SelectMany(s => FrameBytes.Setting(s.Id, s.Value)).ToArray();
        await SendAsync(H2Frame.Settings, 0, 0, payload);
        var clientSettings = await ReadUntilAsync(H2Frame.Settings);
        Assert.Equal(0, clientSettings.Flags);
        await SendAsync(H2Frame.Settings, 0x1, 0, []);
    }

    public async ValueTask DisposeAsync()
    {
        if (_stream is not null)
        {
            await _stream.DisposeAsync();
        }

        _listener.Dispose();
    }
}

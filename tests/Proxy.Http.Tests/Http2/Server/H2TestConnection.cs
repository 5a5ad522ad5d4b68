using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>A received frame, payload copied.</summary>
internal sealed record H2Frame(byte Type, byte Flags, uint StreamId, byte[] Payload)
{
    public const byte Data = 0, Headers = 1, RstStream = 3, Settings = 4, Ping = 6, GoAway = 7, WindowUpdate = 8, Continuation = 9;

    public bool EndStream => (Flags & 0x1) != 0 && Type is Data or Headers;

    public uint ErrorCode => Type == RstStream ? BinaryPrimitives.ReadUInt32BigEndian(Payload) : Type == GoAway ? BinaryPrimitives.ReadUInt32BigEndian(Payload.AsSpan(4)) : 0;
}

/// <summary>
/// A bare HTTP/2 client for protocol tests: frames are written by hand (independent of the code under test);
/// requests use HPACK literals without indexing (no Huffman), responses are decoded with <see cref="HpackDecoder"/>.
/// </summary>
internal sealed class H2TestConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly HpackDecoder _decoder = new();
    private readonly byte[] _header = new byte[9];

    private H2TestConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    /// <summary>Connects, sends the preface and an empty SETTINGS (unless <paramref name="handshake"/> is false).</summary>
    public static async Task<H2TestConnection> ConnectAsync(IPEndPoint endPoint, bool handshake = true)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(Timeouts.Short);
        var connection = new H2TestConnection(socket);
        if (handshake)
        {
            await connection.SendRawAsync(Preface);
            await connection.SendFrameAsync(H2Frame.Settings, 0, 0, []);
        }

        return connection;
    }

    public Task SendRawAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask().WaitAsync(Timeouts.Short);

    public Task SendFrameAsync(byte type, byte flags, uint streamId, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, 9);
        return SendRawAsync(frame);
    }

    /// <summary>HEADERS (END_HEADERS) with the fields as literals without indexing.</summary>
    public Task SendHeadersAsync(uint streamId, bool endStream, params (string Name, string Value)[] fields) =>
        SendFrameAsync(H2Frame.Headers, (byte)(0x4 | (endStream ? 0x1 : 0)), streamId, EncodeBlock(fields));

    /// <summary>A GET with the usual pseudo-headers.</summary>
    public Task SendGetAsync(uint streamId, string path, params (string Name, string Value)[] extra) =>
        SendHeadersAsync(streamId, true, [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path), .. extra]);

    public Task SendDataAsync(uint streamId, byte[] data, bool endStream) =>
        SendFrameAsync(H2Frame.Data, (byte)(endStream ? 0x1 : 0), streamId, data);

    public static byte[] EncodeBlock((string Name, string Value)[] fields)
    {
        var block = new List<byte>();
        foreach (var (name, value) in fields)
        {
            block.Add(0x00);
            AddString(block, Encoding.Latin1.GetBytes(name));
            AddString(block, Encoding.Latin1.GetBytes(value));
        }

        return [.. block];
    }

    private static void AddString(List<byte> block, byte[] s)
    {
        // 7-bit prefix integer, no Huffman.
        if (s.Length < 127)
        {
            block.Add((byte)s.Length);
        }
        else
        {
            block.Add(127);
            var rest = s.Length - 127;
            while (rest >= 128)
            {
                block.Add((byte)((rest & 0x7f) | 0x80));
                rest >>= 7;
            }

            block.Add((byte)rest);
        }

        block.AddRange(s);
    }

    /// <summary>The next frame, or null when the server closed the connection.</summary>
    public async Task<H2Frame?> ReadFrameAsync()
    {
        if (!await FillAsync(_header))
        {
            return null;
        }

        var length = (_header[0] << 16) | (_header[1] << 8) | _header[2];
        var payload = new byte[length];
        if (!await FillAsync(payload))
        {
            return null;
        }

        return new H2Frame(_header[3], _header[4], BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(5)) & 0x7fffffff, payload);
    }

    /// <summary>Frames until one matches (settings, window updates and pings before it are returned too); fails on close.</summary>
    public async Task<(H2Frame Match, List<H2Frame> Seen)> ReadUntilAsync(Func<H2Frame, bool> match)
    {
        var seen = new List<H2Frame>();
        while (true)
        {
            var frame = await ReadFrameAsync() ?? throw new InvalidOperationException("The server closed the connection; frames seen: " + string.Join(", ", seen.Select(f => $"{f.Type}/{f.StreamId}")));
            seen.Add(frame);
            if (match(frame))
            {
                return (frame, seen);
            }
        }
    }

    /// <summary>Whether the server closes the connection (after any frames) within the timeout.</summary>
    public async Task<List<H2Frame>> ReadToEndAsync()
    {
        var frames = new List<H2Frame>();
        while (await ReadFrameAsync() is { } frame)
        {
            frames.Add(frame);
        }

        return frames;
    }

    /// <summary>Decodes a response header block (HEADERS payload without padding/priority) with the connection's decoder.</summary>
    public List<(string Name, string Value)> Decode(byte[] block)
    {
        var sink = new Sink();
        _decoder.Decode(block, endHeaders: true, ref sink);
        return sink.Fields;
    }

    /// <summary>A whole response on <paramref name="streamId"/>: status, headers, body, trailers (after the final END_STREAM).</summary>
    public async Task<H2Response> ReadResponseAsync(uint streamId)
    {
        List<(string, string)>? headers = null;
        List<(string, string)>? trailers = null;
        var body = new MemoryStream();
        while (true)
        {
            var frame = await ReadFrameAsync() ?? throw new InvalidOperationException("closed before the response ended");
            if (frame.StreamId != streamId)
            {
                if (frame.Type == H2Frame.Headers)
                {
                    Decode(frame.Payload);
                }

                continue;
            }

            switch (frame.Type)
            {
                case H2Frame.Headers:
                    var fields = Decode(frame.Payload);
                    if (headers is null || fields.Any(f => f.Item1 == ":status" && f.Item2.StartsWith('1')))
                    {
                        headers = fields;
                    }
                    else
                    {
                        trailers = fields;
                    }

                    break;
                case H2Frame.Data:
                    body.Write(frame.Payload);
                    if (frame.Payload.Length > 0)
                    {
                        // Keep the windows open for large bodies.
                        var increment = new byte[4];
                        BinaryPrimitives.WriteUInt32BigEndian(increment, (uint)frame.Payload.Length);
                        await SendFrameAsync(H2Frame.WindowUpdate, 0, 0, increment);
                        await SendFrameAsync(H2Frame.WindowUpdate, 0, streamId, increment);
                    }

                    break;
                case H2Frame.RstStream:
                    throw new InvalidOperationException($"stream {streamId} reset with code {frame.ErrorCode}");
            }

            if (frame.EndStream)
            {
                var status = int.Parse(headers!.First(h => h.Item1 == ":status").Item2, System.Globalization.CultureInfo.InvariantCulture);
                return new H2Response(status, headers!, body.ToArray(), trailers ?? []);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _decoder.Dispose();
    }

    private async Task<bool> FillAsync(byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            int n;
            try
            {
                n = await _stream.ReadAsync(buffer.AsMemory(read)).AsTask().WaitAsync(Timeouts.Short);
            }
            catch (IOException)
            {
                return false;
            }

            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return true;
    }

    private struct Sink() : IHpackHeaderHandler
    {
        public List<(string Name, string Value)> Fields { get; } = [];

        public readonly void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Fields.Add((Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));

        public readonly void OnStaticIndexedHeader(int index) => OnHeader(HpackStaticTable.Name(index), HpackStaticTable.Value(index));

        public readonly void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => OnHeader(HpackStaticTable.Name(index), value);
    }
}

internal sealed record H2Response(int Status, List<(string Name, string Value)> Headers, byte[] Body, List<(string Name, string Value)> Trailers)
{
    public string? Header(string name) => Headers.FirstOrDefault(h => h.Name == name).Value;

    public string BodyText => Encoding.UTF8.GetString(Body);
}

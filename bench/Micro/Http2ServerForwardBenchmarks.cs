using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Server;

namespace Proxy.Bench.Micro;

/// <summary>
/// One HTTP/2 stream forwarded by <see cref="Http2Server"/> on a long-lived h2c connection, over in-memory pipes with
/// inline schedulers (no sockets): the benchmark plays the client (a HEADERS frame for the next stream id, with a
/// stable HPACK block, plus a connection WINDOW_UPDATE giving back the last response's bytes) and the HTTP/1.1
/// upstream (reads the translated request, writes a 13-byte response); the response comes back to the client as
/// HEADERS + DATA. This is the server half of "0 bytes allocated per forwarded stream in steady state": frame
/// parsing, HPACK decode, the lane to the forwarder, and HPACK encode of the response. <see cref="ForwardPost"/> adds a
/// 13-byte request body (HEADERS with content-length, then DATA with END_STREAM, in one flush): the DATA path into the
/// lane and the flow-control credit taken as the forwarder consumes it. The stream objects are reused by the session
/// (see src/Proxy.Http/Http2/Server/README.md, "Allocation and stream reuse").
/// </summary>
[MemoryDiagnoser]
public class Http2ServerForwardBenchmarks
{
    private static readonly byte[] Response = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nServer: bench\r\n\r\nHello, World!"u8.ToArray();

    // :method GET, :scheme http, :path / (static indexes 2, 6, 4), :authority literal without indexing (name index 1),
    // user-agent literal without indexing (name index 58): the same bytes for every stream.
    private static readonly byte[] Block = BuildBlock();

    // :method POST (static index 3), the same fields, and content-length: 13 (literal without indexing, name index 28).
    private static readonly byte[] PostBlock = BuildPostBlock();

    private static readonly byte[] RequestBody = "Hello, Proxy!"u8.ToArray();

    private IDuplexPipe _client = null!;
    private IDuplexPipe _upstream = null!;
    private Task _serving = null!;
    private uint _streamId = 1;
    private long _unacknowledged;

    [GlobalSetup]
    public void Setup()
    {
        var address = new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9));
        var (clientSide, client) = InMemoryForwarding.CreatePair("client");
        var (upstreamSide, upstream) = InMemoryForwarding.CreatePair("upstream");
        _client = client;
        _upstream = upstream;
        var forwarder = new Http1Forwarder("bench", new SingleConnectionPool(new PooledConnection(address, upstreamSide)));
        var server = new Http2Server(forwarder);
        _client.Output.Write(Http2Constants.ClientPreface);
        WriteFrameHeader(_client.Output, 0, Http2FrameType.Settings, 0, 0);
        InMemoryForwarding.Complete(_client.Output.FlushAsync());
        _serving = server.HandleAsync(clientSide, Http1Routing.ForAddress(address));
        // The server's SETTINGS (and window update): read and acknowledged.
        if (!_client.Input.TryRead(out var settings))
        {
            throw new InvalidOperationException("The server sent no SETTINGS.");
        }

        _client.Input.AdvanceTo(settings.Buffer.End);
        WriteFrameHeader(_client.Output, 0, Http2FrameType.Settings, Http2Flags.Ack, 0);
        InMemoryForwarding.Complete(_client.Output.FlushAsync());
        if (_client.Input.TryRead(out var ack))
        {
            _client.Input.AdvanceTo(ack.Buffer.End);
        }

        Forward();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Output.Complete();
        _upstream.Output.Complete();
        _serving.Wait(TimeSpan.FromSeconds(10));
    }

    [Benchmark]
    public long Forward()
    {
        // Client -> proxy: HEADERS (END_STREAM) for a new stream, and the connection credit for what it last received.
        var output = _client.Output;
        WriteWindowUpdate(output);
        WriteFrameHeader(output, Block.Length, Http2FrameType.Headers, (byte)(Http2Flags.EndHeaders | Http2Flags.EndStream), _streamId);
        output.Write(Block);
        _streamId += 2;
        InMemoryForwarding.Complete(output.FlushAsync());
        _unacknowledged += 13;
        // Upstream -> proxy -> client; the proxy runs inline up to waiting for the client's next request.
        return InMemoryForwarding.Relay(_upstream, _client, Response);
    }

    [Benchmark]
    public long ForwardPost()
    {
        var output = _client.Output;
        WriteWindowUpdate(output);
        WriteFrameHeader(output, PostBlock.Length, Http2FrameType.Headers, Http2Flags.EndHeaders, _streamId);
        output.Write(PostBlock);
        WriteFrameHeader(output, RequestBody.Length, Http2FrameType.Data, Http2Flags.EndStream, _streamId);
        output.Write(RequestBody);
        _streamId += 2;
        InMemoryForwarding.Complete(output.FlushAsync());
        _unacknowledged += 13;
        return InMemoryForwarding.Relay(_upstream, _client, Response);
    }

    /// <summary>The connection credit for what the client last received (its stream windows are fresh per stream).</summary>
    private void WriteWindowUpdate(PipeWriter output)
    {
        if (_unacknowledged > 0)
        {
            WriteFrameHeader(output, 4, Http2FrameType.WindowUpdate, 0, 0);
            var increment = output.GetSpan(4);
            BinaryPrimitives.WriteUInt32BigEndian(increment, (uint)_unacknowledged);
            output.Advance(4);
            _unacknowledged = 0;
        }
    }

    private static byte[] BuildPostBlock()
    {
        var block = new List<byte> { 0x83, 0x86, 0x84 };
        AddLiteral(block, 1, "bench.example"u8);
        AddLiteral(block, 58, "h2load"u8);
        AddLiteral(block, 28, "13"u8);
        return [.. block];
    }

    private static byte[] BuildBlock()
    {
        var block = new List<byte> { 0x82, 0x86, 0x84 };
        AddLiteral(block, 1, "bench.example"u8);
        AddLiteral(block, 58, "h2load"u8);
        return [.. block];
    }

    private static void AddLiteral(List<byte> block, byte nameIndex, ReadOnlySpan<byte> value)
    {
        // Literal header field without indexing, indexed name (RFC 7541 §6.2.2): 4-bit prefix.
        if (nameIndex < 15)
        {
            block.Add(nameIndex);
        }
        else
        {
            block.Add(0x0f);
            block.Add((byte)(nameIndex - 15));
        }

        block.Add((byte)value.Length);
        block.AddRange(value.ToArray());
    }

    private static void WriteFrameHeader(PipeWriter output, int length, Http2FrameType type, byte flags, uint streamId)
    {
        var header = output.GetSpan(9);
        header[0] = (byte)(length >> 16);
        header[1] = (byte)(length >> 8);
        header[2] = (byte)length;
        header[3] = (byte)type;
        header[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(header[5..], streamId);
        output.Advance(9);
    }
}

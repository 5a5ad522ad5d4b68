using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Bench.Micro;

/// <summary>
/// Per-request codec work of the HTTP/2 client connection: encoding a gRPC-like request head (pseudo-headers first,
/// HPACK, HEADERS + CONTINUATION at a small max frame size), and decoding + validating a response head and trailers
/// into a reused <see cref="Http2FieldList"/>, whole and split into 3 pieces. Every operation must show 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class Http2ClientBenchmarks
{
    private readonly HpackEncoder _encoder = new();
    private readonly HpackDecoder _decoder = new();
    private readonly ArrayBufferWriter<byte> _block = new(4096);
    private readonly ArrayBufferWriter<byte> _output = new(16 * 1024);
    private readonly Http2FieldList _request = new();
    private readonly Http2FieldList _response = new();
    private readonly Http2ResponseCollector _collector = new();
    private byte[] _responseBlock = [];
    private byte[] _trailerBlock = [];

    [GlobalSetup]
    public void Setup()
    {
        (string, string)[] request =
        [
            ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "grpc-dotnet/2.60.0"),
            ("grpc-accept-encoding", "identity,deflate,gzip"), ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            (":method", "POST"), (":scheme", "http"), (":authority", "orders.default.svc.cluster.local:8080"),
            (":path", "/orders.v1.OrderService/GetOrder"), ("grpc-timeout", "5S"),
        ];
        foreach (var (name, value) in request)
        {
            _request.Add(Encoding.ASCII.GetBytes(name), Encoding.ASCII.GetBytes(value));
        }

        // The server's blocks, encoded by a separate encoder whose table the decoder mirrors from the first decode on.
        var serverEncoder = new HpackEncoder();
        var block = new ArrayBufferWriter<byte>();
        serverEncoder.BeginHeaderBlock(block);
        serverEncoder.EncodeHeader(block, ":status"u8, "200"u8);
        serverEncoder.EncodeHeader(block, "content-type"u8, "application/grpc"u8);
        serverEncoder.EncodeHeader(block, "date"u8, "Thu, 26 Nov 2026 15:00:00 GMT"u8);
        serverEncoder.EncodeHeader(block, "server"u8, "Kestrel"u8);
        serverEncoder.EncodeHeader(block, "grpc-accept-encoding"u8, "identity,deflate,gzip"u8);
        _responseBlock = block.WrittenSpan.ToArray();
        block.ResetWrittenCount();
        serverEncoder.BeginHeaderBlock(block);
        serverEncoder.EncodeHeader(block, "grpc-status"u8, "0"u8);
        serverEncoder.EncodeHeader(block, "grpc-message"u8, "OK"u8);
        _trailerBlock = block.WrittenSpan.ToArray();
        DecodeResponseHead();
        DecodeTrailers();
    }

    [Benchmark]
    public int EncodeRequestHead()
    {
        _block.ResetWrittenCount();
        _output.ResetWrittenCount();
        Http2ClientConnection.EncodeFieldBlock(_encoder, _block, _request, includePseudo: true);
        Http2FrameWriter.WriteHeaders(_output, 1, _block.WrittenSpan, endStream: false, maxFrameSize: Http2Constants.DefaultMaxFrameSize);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int DecodeResponseHead()
    {
        _response.Clear();
        _collector.Begin(_response, trailers: false);
        var sink = new Http2ResponseSink(_collector);
        _decoder.Decode(_responseBlock, endHeaders: true, ref sink);
        return (int)_collector.Complete() + _collector.Status + _response.Count;
    }

    [Benchmark]
    public int DecodeResponseHeadThreePieces()
    {
        _response.Clear();
        _collector.Begin(_response, trailers: false);
        var sink = new Http2ResponseSink(_collector);
        var third = _responseBlock.Length / 3;
        _decoder.Decode(_responseBlock.AsSpan(0, third), endHeaders: false, ref sink);
        _decoder.Decode(_responseBlock.AsSpan(third, third), endHeaders: false, ref sink);
        _decoder.Decode(_responseBlock.AsSpan(2 * third), endHeaders: true, ref sink);
        return (int)_collector.Complete() + _collector.Status + _response.Count;
    }

    [Benchmark]
    public int DecodeTrailers()
    {
        _response.Clear();
        _collector.Begin(_response, trailers: true);
        var sink = new Http2ResponseSink(_collector);
        _decoder.Decode(_trailerBlock, endHeaders: true, ref sink);
        return (int)_collector.Complete() + _response.Count;
    }
}

using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Bench.Micro;

/// <summary>
/// HPACK hot paths on one connection's decoder and encoder: a browser-like request block and a response block,
/// both "first on the connection" (Huffman literals inserted into an emptied dynamic table) and "repeat" (dynamic
/// table hits plus the fields that change per request), one segment and split across segments; the encoder on the
/// same lists; Huffman decoding alone. Every operation must show 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class HpackBenchmarks
{
    private static readonly (string Name, string Value)[] s_request =
    [
        (":method", "GET"), (":scheme", "https"), (":authority", "shop.example.com"), (":path", "/products/42?ref=home"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-US,en;q=0.5"), ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://shop.example.com/"), ("cookie", "session=3f2a9c1e7b; theme=dark; consent=yes"),
        ("upgrade-insecure-requests", "1"), ("sec-fetch-dest", "document"), ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"), ("priority", "u=0, i"),
    ];

    private static readonly (string Name, string Value)[] s_response =
    [
        (":status", "200"), ("server", "nginx"), ("date", "Thu, 26 Nov 2026 07:00:00 GMT"),
        ("content-type", "text/html; charset=utf-8"), ("content-length", "5120"), ("cache-control", "private, max-age=0"),
        ("vary", "accept-encoding"), ("content-encoding", "br"),
    ];

    // One decoder per direction, each in the table state its repeat block expects.
    private readonly HpackDecoder _requestDecoder = new();
    private readonly HpackDecoder _responseDecoder = new();
    private readonly HpackEncoder _encoder = new();
    private readonly ArrayBufferWriter<byte> _output = new(4096);
    private byte[][] _requestNames = [];
    private byte[][] _requestValues = [];
    private byte[][] _responseNames = [];
    private byte[][] _responseValues = [];
    private byte[] _requestFirst = [];
    private byte[] _requestRepeat = [];
    private byte[] _responseFirst = [];
    private byte[] _responseRepeat = [];
    private ReadOnlySequence<byte> _requestFirstMulti;
    private byte[] _nginxResponse = [];
    private byte[] _huffman = [];
    private byte[] _huffmanOut = [];

    [GlobalSetup]
    public void Setup()
    {
        (_requestNames, _requestValues) = Split(s_request);
        (_responseNames, _responseValues) = Split(s_response);

        // What a peer's encoder sends: the first block of each kind, then the same lists again.
        var client = new HpackEncoder();
        _requestFirst = EncodeWith(client, _requestNames, _requestValues);
        _requestRepeat = EncodeWith(client, _requestNames, _requestValues);
        var server = new HpackEncoder();
        _responseFirst = EncodeWith(server, _responseNames, _responseValues);
        _responseRepeat = EncodeWith(server, _responseNames, _responseValues);
        _requestFirstMulti = SequenceSegments.Split(_requestFirst, 3);

        // The decoder's table in the state the repeat blocks expect.
        var sink = new LengthSink();
        _requestDecoder.Decode(_requestFirst, endHeaders: true, ref sink);
        _requestDecoder.Decode(_requestRepeat, endHeaders: true, ref sink);
        _responseDecoder.Decode(_responseFirst, endHeaders: true, ref sink);
        _responseDecoder.Decode(_responseRepeat, endHeaders: true, ref sink);

        _nginxResponse = NginxBlock();
        _responseDecoder.Decode(_nginxResponse, endHeaders: true, ref sink);

        _huffman = new byte[HpackHuffman.EncodedLength(_requestValues[4])];
        HpackHuffman.Encode(_requestValues[4], _huffman);
        _huffmanOut = new byte[HpackHuffman.MaxDecodedLength(_huffman.Length)];

        // Warm the encoder's table and the writer's buffer.
        EncodeRequestRepeat();
        EncodeResponseRepeat();
    }

    private static byte[] NginxBlock()
    {
        // Static name indexes (RFC 7541 Appendix A): server 54, date 33, content-type 31, content-length 28; a 4-bit
        // prefix literal without indexing, so 15 + continuation for the first three.
        var block = new List<byte> { 0x88 };
        AddLiteral(block, 54, "nginx");
        AddLiteral(block, 33, "Sat, 28 Nov 2026 03:00:00 GMT");
        AddLiteral(block, 31, "text/plain");
        AddLiteral(block, 28, "13");
        return [.. block];

        static void AddLiteral(List<byte> block, int nameIndex, string value)
        {
            if (nameIndex < 15)
            {
                block.Add((byte)nameIndex);
            }
            else
            {
                block.Add(0x0F);
                block.Add((byte)(nameIndex - 15));
            }

            var raw = Encoding.ASCII.GetBytes(value);
            var coded = new byte[HpackHuffman.EncodedLength(raw)];
            HpackHuffman.Encode(raw, coded);
            block.Add((byte)(0x80 | coded.Length));
            block.AddRange(coded);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _requestDecoder.Dispose();
        _responseDecoder.Dispose();
    }

    /// <summary>Request block with dynamic table hits (the steady state of a connection): no table changes.</summary>
    [Benchmark(Baseline = true)]
    public int DecodeRequestRepeat()
    {
        var sink = new LengthSink();
        _requestDecoder.Decode(_requestRepeat, endHeaders: true, ref sink);
        return sink.Total;
    }

    /// <summary>First request on a connection: Huffman literals, each inserted into the (emptied) dynamic table.</summary>
    [Benchmark]
    public int DecodeRequestFirst()
    {
        _requestDecoder.DynamicTable.Clear();
        var sink = new LengthSink();
        _requestDecoder.Decode(_requestFirst, endHeaders: true, ref sink);
        return sink.Total;
    }

    /// <summary>The same first request split across three segments (strings straddle the cuts).</summary>
    [Benchmark]
    public int DecodeRequestFirstMultiSegment()
    {
        _requestDecoder.DynamicTable.Clear();
        var sink = new LengthSink();
        _requestDecoder.Decode(in _requestFirstMulti, endHeaders: true, ref sink);
        return sink.Total;
    }

    /// <summary>Response block with table hits; date and content-length are literals.</summary>
    [Benchmark]
    public int DecodeResponseRepeat()
    {
        var sink = new LengthSink();
        _responseDecoder.Decode(_responseRepeat, endHeaders: true, ref sink);
        return sink.Total;
    }

    /// <summary>
    /// nginx's response block: :status indexed, then server, date, content-type and content-length as literals without
    /// indexing, Huffman-coded, on every response (nginx indexes nothing). The steady state of an nginx upstream.
    /// </summary>
    [Benchmark]
    public int DecodeNginxResponse()
    {
        var sink = new LengthSink();
        _responseDecoder.Decode(_nginxResponse, endHeaders: true, ref sink);
        return sink.Total;
    }

    [Benchmark]
    public int DecodeResponseFirst()
    {
        _responseDecoder.DynamicTable.Clear();
        var sink = new LengthSink();
        _responseDecoder.Decode(_responseFirst, endHeaders: true, ref sink);
        return sink.Total;
    }

    [Benchmark]
    public int EncodeRequestRepeat()
    {
        _output.ResetWrittenCount();
        _encoder.BeginHeaderBlock(_output);
        for (var i = 0; i < _requestNames.Length; i++)
        {
            _encoder.EncodeHeader(_output, _requestNames[i], _requestValues[i]);
        }

        return _output.WrittenCount;
    }

    [Benchmark]
    public int EncodeRequestFirst()
    {
        _encoder.DynamicTable.Clear();
        return EncodeRequestRepeat();
    }

    [Benchmark]
    public int EncodeResponseRepeat()
    {
        _output.ResetWrittenCount();
        _encoder.BeginHeaderBlock(_output);
        for (var i = 0; i < _responseNames.Length; i++)
        {
            _encoder.EncodeHeader(_output, _responseNames[i], _responseValues[i]);
        }

        return _output.WrittenCount;
    }

    /// <summary>A 70-byte user-agent value, Huffman-coded (53 bytes on the wire).</summary>
    [Benchmark]
    public int HuffmanDecode() => HpackHuffman.Decode(_huffman, _huffmanOut);

    private static (byte[][] Names, byte[][] Values) Split((string Name, string Value)[] list) =>
        (list.Select(h => Encoding.ASCII.GetBytes(h.Name)).ToArray(), list.Select(h => Encoding.ASCII.GetBytes(h.Value)).ToArray());

    private static byte[] EncodeWith(HpackEncoder encoder, byte[][] names, byte[][] values)
    {
        var output = new ArrayBufferWriter<byte>();
        encoder.BeginHeaderBlock(output);
        for (var i = 0; i < names.Length; i++)
        {
            encoder.EncodeHeader(output, names[i], values[i]);
        }

        return output.WrittenSpan.ToArray();
    }

    /// <summary>A struct handler (calls devirtualize) that only sums lengths, so nothing is optimised away.</summary>
    private struct LengthSink : IHpackHeaderHandler
    {
        public int Total;

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Total += name.Length + value.Length;

        public void OnStaticIndexedHeader(int index) => Total += index;

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => Total += index + value.Length;
    }
}

using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Proxy.Http.Http1;

namespace Proxy.Bench.Micro;

/// <summary>
/// HTTP/1.1 codec hot paths: a browser-like request head and a small response head, each as one segment
/// (the common case with Kestrel's read buffers) and split across segments (the copy path), plus a small
/// chunked body. Every operation must show 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class Http1ParserBenchmarks
{
    private const string RequestText =
        "GET /products/42?ref=home HTTP/1.1\r\n" +
        "Host: shop.example.com\r\n" +
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
        "Accept-Language: en-US,en;q=0.5\r\n" +
        "Accept-Encoding: gzip, deflate, br, zstd\r\n" +
        "Referer: https://shop.example.com/\r\n" +
        "Connection: keep-alive\r\n" +
        "Cookie: session=3f2a9c1e7b; theme=dark; consent=yes\r\n" +
        "Upgrade-Insecure-Requests: 1\r\n" +
        "Sec-Fetch-Dest: document\r\n" +
        "Sec-Fetch-Mode: navigate\r\n" +
        "Sec-Fetch-Site: same-origin\r\n" +
        "Priority: u=0, i\r\n" +
        "\r\n";

    private const string ResponseText =
        "HTTP/1.1 200 OK\r\n" +
        "Server: nginx\r\n" +
        "Date: Thu, 26 Nov 2026 07:00:00 GMT\r\n" +
        "Content-Type: text/plain\r\n" +
        "Content-Length: 13\r\n" +
        "Connection: keep-alive\r\n" +
        "\r\n";

    private readonly Http1RequestHeadParser _requestParser = new();
    private readonly Http1ResponseHeadParser _responseParser = new();
    private readonly Http1RequestHead _requestHead = new();
    private readonly Http1ResponseHead _responseHead = new();
    private readonly ChunkedBodyReader _chunked = new();
    private ReadOnlySequence<byte> _requestSingle;
    private ReadOnlySequence<byte> _requestMulti;
    private ReadOnlySequence<byte> _responseSingle;
    private ReadOnlySequence<byte> _responseMulti;
    private ReadOnlySequence<byte> _chunkedSingle;
    private ReadOnlySequence<byte> _chunkedMulti;

    [GlobalSetup]
    public void Setup()
    {
        var request = Encoding.ASCII.GetBytes(RequestText);
        var response = Encoding.ASCII.GetBytes(ResponseText);
        var chunked = Encoding.ASCII.GetBytes("400\r\n" + new string('a', 0x400) + "\r\n200;ext=1\r\n" + new string('b', 0x200) + "\r\n0\r\nX-Checksum: abc\r\n\r\n");
        _requestSingle = new ReadOnlySequence<byte>(request);
        _requestMulti = Split(request, 3);
        _responseSingle = new ReadOnlySequence<byte>(response);
        _responseMulti = Split(response, 3);
        _chunkedSingle = new ReadOnlySequence<byte>(chunked);
        _chunkedMulti = Split(chunked, 4);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _requestHead.Dispose();
        _responseHead.Dispose();
    }

    [Benchmark]
    public bool RequestHeadSingleSegment() => _requestParser.TryParse(_requestSingle, _requestHead, out _);

    [Benchmark]
    public bool RequestHeadMultiSegment() => _requestParser.TryParse(_requestMulti, _requestHead, out _);

    [Benchmark]
    public bool ResponseHeadSingleSegment() => _responseParser.TryParse(_responseSingle, Http1Method.Get, _responseHead, out _);

    [Benchmark]
    public bool ResponseHeadMultiSegment() => _responseParser.TryParse(_responseMulti, Http1Method.Get, _responseHead, out _);

    [Benchmark]
    public long ChunkedBodySingleSegment() => Drain(_chunkedSingle);

    [Benchmark]
    public long ChunkedBodyMultiSegment() => Drain(_chunkedMulti);

    private long Drain(ReadOnlySequence<byte> input)
    {
        _chunked.Reset();
        var rest = input;
        while (_chunked.Read(rest, out _, out var consumed) != ChunkedReadResult.Completed)
        {
            rest = rest.Slice(consumed);
        }

        return _chunked.BytesRead;
    }

    /// <summary>Splits into <paramref name="parts"/> equal segments, like a head straddling pipe buffers.</summary>
    private static ReadOnlySequence<byte> Split(byte[] bytes, int parts)
    {
        var size = (bytes.Length + parts - 1) / parts;
        Segment? first = null;
        Segment? last = null;
        for (var start = 0; start < bytes.Length; start += size)
        {
            var piece = bytes.AsMemory(start, Math.Min(size, bytes.Length - start));
            if (last is null)
            {
                first = last = new Segment(piece, 0);
            }
            else
            {
                last = last.Append(piece);
            }
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

using System.Buffers;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

/// <summary>Warm decoder and encoder allocate nothing per block (the benchmarks measure the same with BenchmarkDotNet).</summary>
public sealed class HpackAllocationTests
{
    [Fact]
    public void DecodeAndEncode_WarmConnection_AllocateNothingPerBlock()
    {
        var story = HpackCorpus.Find("raw-data", "story_20");
        var lists = story.Cases.Select(c => c.Headers.Select(h => (Hpack.Bytes(h.Name), Hpack.Bytes(h.Value))).ToArray()).ToArray();
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        var output = new ArrayBufferWriter<byte>(64 * 1024);

        // First pass: JIT, the decoder's pooled string buffers, the writer's buffer, table contents.
        RunAll(lists, encoder, decoder, output);

        // Second pass over the same story: literals, Huffman strings, table hits and insertions again.
        var before = GC.GetAllocatedBytesForCurrentThread();
        var count = RunAll(lists, encoder, decoder, output);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(lists.Sum(l => l.Length), count);
    }

    private static int RunAll((byte[], byte[])[][] lists, HpackEncoder encoder, HpackDecoder decoder, ArrayBufferWriter<byte> output)
    {
        var sink = new CountingSink();
        foreach (var list in lists)
        {
            output.ResetWrittenCount();
            encoder.BeginHeaderBlock(output);
            foreach (var (name, value) in list)
            {
                encoder.EncodeHeader(output, name, value);
            }

            decoder.Decode(output.WrittenSpan, endHeaders: true, ref sink);
        }

        return sink.Count;
    }

    private struct CountingSink : IHpackHeaderHandler
    {
        public int Count;

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Count++;

        public void OnStaticIndexedHeader(int index) => Count++;

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => Count++;
    }
}

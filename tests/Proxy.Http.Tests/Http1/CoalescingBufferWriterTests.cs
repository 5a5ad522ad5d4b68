using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public class CoalescingBufferWriterTests
{
    [Fact]
    public async Task Head_ReachesThePipeOnlyAtCommit_InOneAdvance()
    {
        var pipe = new Pipe();
        var counting = new CountingWriter(pipe.Writer);
        var writer = new CoalescingBufferWriter().Start(counting);

        Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, 200, "OK"u8);
        Http1HeadWriter.WriteHeader(writer, "content-length"u8, "13"u8);
        Http1HeadWriter.WriteHeader(writer, "server"u8, "nginx"u8);
        Http1HeadWriter.WriteEndOfHead(writer);
        Assert.Equal(0, counting.Advances);
        Assert.Equal(0, pipe.Writer.UnflushedBytes);

        writer.Commit();
        Assert.Equal(1, counting.Advances);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("HTTP/1.1 200 OK\r\ncontent-length: 13\r\nserver: nginx\r\n\r\n", Encoding.ASCII.GetString(read.Buffer.ToArray()));
    }

    [Fact]
    public void LargeHead_SpansBlocks_BytesExactAndInOrder()
    {
        var inner = new ArrayBufferWriter<byte>(16);
        var small = new SmallBlockWriter(inner, 700);
        var writer = new CoalescingBufferWriter().Start(small);
        var expected = new StringBuilder();
        for (var i = 0; i < 200; i++)
        {
            var value = new string((char)('a' + (i % 26)), i % 37);
            Http1HeadWriter.WriteHeader(writer, Encoding.ASCII.GetBytes("x-field-" + i), Encoding.ASCII.GetBytes(value));
            expected.Append("x-field-").Append(i).Append(": ").Append(value).Append("\r\n");
        }

        writer.Commit();
        Assert.Equal(expected.ToString(), Encoding.ASCII.GetString(inner.WrittenSpan));
        Assert.True(small.Advances > 1, "a head larger than a block takes several blocks");
    }

    [Fact]
    public void Advance_PastTheHandedOutBuffer_Throws_AndReuseAfterCommitStartsClean()
    {
        var inner = new ArrayBufferWriter<byte>();
        var writer = new CoalescingBufferWriter().Start(inner);
        var length = writer.GetSpan(4).Length;
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(length + 1));
        "ab"u8.CopyTo(writer.GetSpan(2));
        writer.Advance(2);
        writer.Commit();

        writer.Start(inner);
        writer.Commit();
        Assert.Equal("ab", Encoding.ASCII.GetString(inner.WrittenSpan));
    }

    private sealed class CountingWriter(PipeWriter inner) : IBufferWriter<byte>
    {
        public int Advances { get; private set; }

        public void Advance(int count)
        {
            Advances++;
            inner.Advance(count);
        }

        public Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);
    }

    /// <summary>Hands out at most <c>max</c> bytes at a time (never less than asked), like a pipe near a segment's end.</summary>
    private sealed class SmallBlockWriter(ArrayBufferWriter<byte> inner, int max) : IBufferWriter<byte>
    {
        public int Advances { get; private set; }

        public void Advance(int count)
        {
            Advances++;
            inner.Advance(count);
        }

        public Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint)[..Math.Max(sizeHint, Math.Min(max, inner.GetMemory(sizeHint).Length))];

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}

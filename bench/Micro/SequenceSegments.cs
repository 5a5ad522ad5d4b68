using System.Buffers;

namespace Proxy.Bench.Micro;

/// <summary>Multi-segment sequences for the parser benchmarks (the shape a PipeReader hands out across reads).</summary>
internal static class SequenceSegments
{
    /// <summary><paramref name="bytes"/> cut into <paramref name="count"/> segments of (nearly) equal size.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, int count)
    {
        var size = (bytes.Length + count - 1) / count;
        var first = new Segment(bytes.AsMemory(0, Math.Min(size, bytes.Length)), 0);
        var last = first;
        for (var start = size; start < bytes.Length; start += size)
        {
            last = last.Append(bytes.AsMemory(start, Math.Min(size, bytes.Length - start)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
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

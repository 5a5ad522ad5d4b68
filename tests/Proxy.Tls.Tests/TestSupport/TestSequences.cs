using System.Buffers;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>Builds ReadOnlySequences shaped like PipeReader buffers: one segment, one per byte, or cut at given offsets.</summary>
internal static class TestSequences
{
    public static ReadOnlySequence<byte> SegmentPerByte(byte[] bytes)
    {
        var cuts = new int[Math.Max(0, bytes.Length - 1)];
        for (var i = 0; i < cuts.Length; i++)
        {
            cuts[i] = i + 1;
        }

        return Split(bytes, cuts);
    }

    /// <summary>Splits into segments at the given (ascending) offsets.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, params int[] cuts)
    {
        if (bytes.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var pieces = new List<byte[]>();
        var start = 0;
        foreach (var cut in cuts)
        {
            pieces.Add(bytes[start..cut]);
            start = cut;
        }

        pieces.Add(bytes[start..]);
        var first = new Segment(pieces[0], 0);
        var last = first;
        for (var i = 1; i < pieces.Count; i++)
        {
            last = last.Append(pieces[i]);
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

using System.Buffers;
using System.Text;

namespace Proxy.Http.Tests.Http1;

/// <summary>Builds ReadOnlySequences shaped like PipeReader buffers: one segment, or one segment per byte.</summary>
internal static class TestSequences
{
    public static ReadOnlySequence<byte> Single(byte[] bytes) => new(bytes);

    public static ReadOnlySequence<byte> SegmentPerByte(byte[] bytes)
    {
        if (bytes.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(new[] { bytes[0] }, 0);
        var last = first;
        for (var i = 1; i < bytes.Length; i++)
        {
            last = last.Append(new[] { bytes[i] });
        }

        return new ReadOnlySequence<byte>(first, 0, last, 1);
    }

    /// <summary>Splits into segments at the given offsets.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, params int[] cuts)
    {
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

    /// <summary>The two shapes every parser case is run in.</summary>
    public static IEnumerable<(string Shape, ReadOnlySequence<byte> Sequence)> Shapes(byte[] bytes)
    {
        yield return ("single", Single(bytes));
        yield return ("per-byte", SegmentPerByte(bytes));
    }

    public static byte[] Ascii(string s) => Encoding.Latin1.GetBytes(s);

    public static string Text(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    public static string Text(in ReadOnlySequence<byte> bytes) => Encoding.Latin1.GetString(bytes.ToArray());

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

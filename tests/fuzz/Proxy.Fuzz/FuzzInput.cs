using System.Buffers;

namespace Proxy.Fuzz;

/// <summary>
/// The shape of every input: byte 0 selects options (target-specific bits), byte 1 selects how the payload is cut
/// into segments (as a PipeReader would hand it over), the rest is the payload the parser sees.
/// </summary>
internal readonly struct FuzzInput
{
    public FuzzInput(byte[] data)
    {
        Control = data.Length > 0 ? data[0] : (byte)0;
        Cut = data.Length > 1 ? data[1] : (byte)0;
        Payload = data.Length > 2 ? data.AsMemory(2) : ReadOnlyMemory<byte>.Empty;
    }

    public byte Control { get; }

    public byte Cut { get; }

    public ReadOnlyMemory<byte> Payload { get; }

    public bool Bit(int bit) => (Control & (1 << bit)) != 0;

    /// <summary>
    /// Segment boundaries for a payload of <paramref name="length"/> bytes, from the cut byte: mode 0 and 3 a few
    /// pseudo-random cuts, mode 1 one byte per segment, mode 2 fixed-size pieces. Strictly increasing, inside (0, length).
    /// </summary>
    public int[] Cuts(int length)
    {
        if (length < 2)
        {
            return [];
        }

        var cuts = new List<int>();
        var mode = Cut >> 6;
        if (mode == 1 && length <= 4096)
        {
            for (var i = 1; i < length; i++)
            {
                cuts.Add(i);
            }
        }
        else if (mode == 2)
        {
            var size = (Cut & 63) + 1;
            for (var i = size; i < length; i += size)
            {
                cuts.Add(i);
            }
        }
        else
        {
            var count = (Cut & 3) + 1;
            var state = (uint)(Cut * 2654435761u) ^ (uint)length;
            for (var i = 0; i < count; i++)
            {
                state = (state * 1103515245u) + 12345u;
                cuts.Add(1 + (int)((state >> 8) % (uint)(length - 1)));
            }
        }

        return cuts.Distinct().Order().ToArray();
    }

    /// <summary>A prefix length in [0, length), from the cut byte (for the "prefix is incomplete" checks).</summary>
    public int PrefixLength(int length) => length == 0 ? 0 : (int)(((uint)Cut * 40503u + (uint)length * 7u) % (uint)length);
}

/// <summary>Builds multi-segment sequences.</summary>
internal static class Sequences
{
    public static ReadOnlySequence<byte> Split(ReadOnlyMemory<byte> data, ReadOnlySpan<int> cuts)
    {
        if (cuts.IsEmpty)
        {
            return new ReadOnlySequence<byte>(data);
        }

        var start = 0;
        Segment? first = null;
        Segment? last = null;
        foreach (var cut in cuts)
        {
            Append(data[start..cut], ref first, ref last);
            start = cut;
        }

        Append(data[start..], ref first, ref last);
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    /// <summary>Offset of <paramref name="position"/> from the start of <paramref name="sequence"/>.</summary>
    public static long Offset(in ReadOnlySequence<byte> sequence, SequencePosition position) => sequence.Slice(sequence.Start, position).Length;

    private static void Append(ReadOnlyMemory<byte> memory, ref Segment? first, ref Segment? last)
    {
        // Fresh copies, so a parser reading past its slice would read different bytes than in the single-segment run.
        var segment = new Segment(memory.ToArray(), last is null ? 0 : last.RunningIndex + last.Memory.Length);
        if (last is null)
        {
            first = segment;
        }
        else
        {
            last.SetNext(segment);
        }

        last = segment;
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public void SetNext(Segment next) => Next = next;
    }
}

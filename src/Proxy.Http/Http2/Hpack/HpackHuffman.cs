using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical (codes of one length are consecutive and
/// ordered by symbol), so only the 257 code lengths are stored; the codes and a 4-bit-at-a-time decoding state
/// machine are generated once at startup.
/// </summary>
public static class HpackHuffman
{
    /// <summary>The symbol that must never appear in a string (RFC 7541 §5.2).</summary>
    public const int Eos = 256;

    // Code length in bits of symbols 0..256 (EOS), transcribed from RFC 7541 Appendix B.
    private static ReadOnlySpan<byte> CodeLengths =>
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6,
        12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
        30,
    ];

    // Decoding table entry layout: bits 0-7 next state, 8-15 emitted symbol, then the flags below.
    private const uint FlagEmit = 1u << 16;
    private const uint FlagFail = 1u << 17;
    private const uint FlagAccept = 1u << 18;

    private static readonly uint[] s_codes = new uint[257];
    private static readonly byte[] s_lengths = CodeLengths.ToArray();

    // 256 internal tree nodes x 16 nibbles: one lookup per 4 input bits instead of one branch per bit.
    private static readonly uint[] s_decodeTable = BuildDecodeTable();

    /// <summary>The code of <paramref name="symbol"/>, right-aligned.</summary>
    public static uint Code(int symbol) => s_codes[symbol];

    /// <summary>The code length of <paramref name="symbol"/> in bits.</summary>
    public static int CodeLength(int symbol) => s_lengths[symbol];

    /// <summary>Bytes the Huffman encoding of <paramref name="source"/> takes (padding included).</summary>
    public static int EncodedLength(ReadOnlySpan<byte> source)
    {
        var lengths = s_lengths;
        long bits = 0;
        foreach (var b in source)
        {
            bits += lengths[b];
        }

        return (int)((bits + 7) >> 3);
    }

    /// <summary>
    /// Encodes <paramref name="source"/> into <paramref name="destination"/> (which must hold
    /// <see cref="EncodedLength"/> bytes), padding with the most significant bits of EOS. Returns the bytes written.
    /// </summary>
    public static int Encode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        var codes = s_codes;
        var lengths = s_lengths;
        ulong acc = 0;
        var bits = 0;
        var written = 0;
        foreach (var b in source)
        {
            // Codes are at most 30 bits and fewer than 8 bits are pending, so 64 bits never overflow.
            acc = (acc << lengths[b]) | codes[b];
            bits += lengths[b];
            while (bits >= 8)
            {
                bits -= 8;
                destination[written++] = (byte)(acc >> bits);
            }
        }

        if (bits > 0)
        {
            destination[written++] = (byte)((acc << (8 - bits)) | (0xFFu >> bits));
        }

        return written;
    }

    /// <summary>
    /// Decodes a whole Huffman string. Returns the bytes written to <paramref name="destination"/> (which needs at
    /// most <c>source.Length * 8 / 5</c> bytes); throws <see cref="HpackDecodingException"/> on EOS or bad padding,
    /// <see cref="ArgumentException"/> when the destination is too short.
    /// </summary>
    public static int Decode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        var state = DecodeState.Start;
        var written = DecodeChunk(source, destination, ref state);
        if (!state.IsAccepting)
        {
            throw new HpackDecodingException(HpackDecodingError.InvalidHuffman);
        }

        return written;
    }

    /// <summary>
    /// Decodes the next piece of a Huffman string that may be split anywhere; <paramref name="state"/> carries the
    /// position in the code tree. After the last piece, <see cref="DecodeState.IsAccepting"/> must be true.
    /// </summary>
    internal static int DecodeChunk(ReadOnlySpan<byte> source, Span<byte> destination, ref DecodeState state)
    {
        // Indices are (node << 4) | nibble with node <= 255: always inside the 4096-entry table, so the lookups
        // skip bounds checks.
        ref var table = ref MemoryMarshal.GetArrayDataReference(s_decodeTable);
        var node = (uint)state.Node;
        var accepting = state.IsAccepting;
        var written = 0;
        foreach (var b in source)
        {
            var high = Unsafe.Add(ref table, (int)((node << 4) | (uint)(b >> 4)));
            // A failing entry has node 0 and no symbol, so the second lookup is harmless and one test covers both.
            var low = Unsafe.Add(ref table, (int)(((high & 0xFF) << 4) | (uint)(b & 0xF)));
            if (((high | low) & FlagFail) != 0)
            {
                throw new HpackDecodingException(HpackDecodingError.InvalidHuffman);
            }

            if ((high & FlagEmit) != 0)
            {
                destination[written++] = (byte)(high >> 8);
            }

            if ((low & FlagEmit) != 0)
            {
                destination[written++] = (byte)(low >> 8);
            }

            node = low & 0xFF;
            accepting = (low & FlagAccept) != 0;
        }

        state.Node = (byte)node;
        state.IsAccepting = accepting;
        return written;
    }

    /// <summary>Most bytes a Huffman string of <paramref name="encodedLength"/> bytes decodes to (shortest code: 5 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MaxDecodedLength(int encodedLength) => (int)(((long)encodedLength * 8) / 5);

    private static uint[] BuildDecodeTable()
    {
        // Canonical codes: sort by (length, symbol), count up, shift left when the length grows.
        var order = new int[257];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var lengths = s_lengths;
        Array.Sort(order, (a, b) => lengths[a] != lengths[b] ? lengths[a].CompareTo(lengths[b]) : a.CompareTo(b));
        uint code = 0;
        var previous = lengths[order[0]];
        for (var i = 0; i < order.Length; i++)
        {
            var symbol = order[i];
            if (i > 0)
            {
                code = (code + 1) << (lengths[symbol] - previous);
            }

            previous = lengths[symbol];
            s_codes[symbol] = code;
        }

        // Binary tree: internal nodes 0..255 (0 is the root); a child >= 0 is a node, < 0 is leaf ~symbol.
        var children = new int[256 * 2];
        Array.Fill(children, int.MinValue);
        var depth = new int[256];
        var allOnes = new bool[256];
        allOnes[0] = true;
        var nextNode = 1;
        for (var symbol = 0; symbol < 257; symbol++)
        {
            var node = 0;
            for (var bit = lengths[symbol] - 1; bit >= 0; bit--)
            {
                var one = (s_codes[symbol] >> bit) & 1;
                var slot = (node * 2) + (int)one;
                if (bit == 0)
                {
                    Debug.Assert(children[slot] == int.MinValue, "prefix-free code");
                    children[slot] = ~symbol;
                    break;
                }

                if (children[slot] == int.MinValue)
                {
                    children[slot] = nextNode;
                    depth[nextNode] = depth[node] + 1;
                    allOnes[nextNode] = allOnes[node] && one == 1;
                    nextNode++;
                }

                node = children[slot];
            }
        }

        Debug.Assert(nextNode == 256, "a complete code over 257 symbols has 256 internal nodes");

        // A string may end at the root or after at most 7 padding bits, all ones (a prefix of EOS).
        static bool Accepting(int node, int[] depth, bool[] allOnes) => node == 0 || (allOnes[node] && depth[node] <= 7);

        var table = new uint[256 * 16];
        for (var state = 0; state < 256; state++)
        {
            for (var nibble = 0; nibble < 16; nibble++)
            {
                var node = state;
                uint entry = 0;
                for (var bit = 3; bit >= 0; bit--)
                {
                    var child = children[(node * 2) + ((nibble >> bit) & 1)];
                    if (child >= 0)
                    {
                        node = child;
                        continue;
                    }

                    var symbol = ~child;
                    if (symbol == Eos)
                    {
                        entry = FlagFail;
                        break;
                    }

                    // The shortest code has 5 bits, so one nibble emits at most one symbol.
                    entry = FlagEmit | ((uint)symbol << 8);
                    node = 0;
                }

                if ((entry & FlagFail) == 0)
                {
                    entry |= (uint)node;
                    if (Accepting(node, depth, allOnes))
                    {
                        entry |= FlagAccept;
                    }
                }

                table[(state << 4) | nibble] = entry;
            }
        }

        return table;
    }

    /// <summary>Position inside a Huffman string split across inputs.</summary>
    internal struct DecodeState
    {
        public byte Node;
        public bool IsAccepting;

        /// <summary>The state at the start of a string (the root; an empty string is valid).</summary>
        public static DecodeState Start => new() { Node = 0, IsAccepting = true };
    }
}

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// Prefixed integers (RFC 7541 §5.1). Values are limited to <see cref="int.MaxValue"/>; a decoder refuses larger
/// values and non-minimal encodings (a final continuation byte of zero after another continuation byte).
/// </summary>
public static class HpackInteger
{
    /// <summary>Most bytes an int needs: the prefix byte plus five continuation bytes.</summary>
    public const int MaxEncodedLength = 6;

    /// <summary>
    /// Writes <paramref name="value"/> with an <paramref name="prefixBits"/>-bit prefix; the bits of the first byte
    /// above the prefix come from <paramref name="firstByteFlags"/>. Returns the bytes written, or 0 when
    /// <paramref name="destination"/> is too short.
    /// </summary>
    public static int Encode(int value, int prefixBits, byte firstByteFlags, Span<byte> destination)
    {
        if (value < 0 || (uint)(prefixBits - 1) > 7)
        {
            throw new ArgumentOutOfRangeException(nameof(value));
        }

        if (destination.IsEmpty)
        {
            return 0;
        }

        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            destination[0] = (byte)(firstByteFlags | value);
            return 1;
        }

        destination[0] = (byte)(firstByteFlags | max);
        var rest = (uint)(value - max);
        var i = 1;
        while (rest >= 0x80)
        {
            if ((uint)i >= (uint)destination.Length)
            {
                return 0;
            }

            destination[i++] = (byte)(rest | 0x80);
            rest >>= 7;
        }

        if ((uint)i >= (uint)destination.Length)
        {
            return 0;
        }

        destination[i++] = (byte)rest;
        return i;
    }

    /// <summary>Bytes <see cref="Encode"/> needs for <paramref name="value"/>.</summary>
    public static int EncodedLength(int value, int prefixBits)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            return 1;
        }

        var rest = (uint)(value - max);
        var length = 2;
        while (rest >= 0x80)
        {
            length++;
            rest >>= 7;
        }

        return length;
    }

    /// <summary>
    /// Decodes a whole integer from <paramref name="source"/>. Returns false when the source ends before the integer
    /// does (nothing consumed). Throws <see cref="HpackDecodingException"/> on overflow or redundant bytes.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> source, int prefixBits, out int value, out int consumed)
    {
        value = 0;
        consumed = 0;
        if (source.IsEmpty)
        {
            return false;
        }

        var state = default(Continuation);
        if (StartDecode(source[0], prefixBits, out value, ref state))
        {
            consumed = 1;
            return true;
        }

        for (var i = 1; i < source.Length; i++)
        {
            if (ContinueDecode(source[i], ref state, out value))
            {
                consumed = i + 1;
                return true;
            }
        }

        value = 0;
        return false;
    }

    /// <summary>Reads the prefix of the first byte; true when the integer is complete.</summary>
    internal static bool StartDecode(byte first, int prefixBits, out int value, ref Continuation state)
    {
        var max = (1 << prefixBits) - 1;
        value = first & max;
        if (value < max)
        {
            return true;
        }

        state = new Continuation { Value = (uint)max, Shift = 0 };
        return false;
    }

    /// <summary>Adds one continuation byte; true when the integer is complete.</summary>
    internal static bool ContinueDecode(byte b, ref Continuation state, out int value)
    {
        value = 0;
        var bits = (uint)(b & 0x7f);
        // 7 bits at shift 28 would already exceed 31 bits unless they are 0..7; a shift of 35 always overflows.
        if (state.Shift > 28 || (state.Shift == 28 && bits > 7))
        {
            throw new HpackDecodingException(HpackDecodingError.IntegerOverflow);
        }

        var sum = (ulong)state.Value + ((ulong)bits << state.Shift);
        if (sum > int.MaxValue)
        {
            throw new HpackDecodingException(HpackDecodingError.IntegerOverflow);
        }

        if ((b & 0x80) == 0)
        {
            // A zero final byte after another continuation byte adds nothing: a non-minimal encoding.
            if (bits == 0 && state.Shift > 0)
            {
                throw new HpackDecodingException(HpackDecodingError.IntegerOverflow);
            }

            value = (int)sum;
            return true;
        }

        state.Value = (uint)sum;
        state.Shift += 7;
        return false;
    }

    /// <summary>State of an integer split across input spans.</summary>
    internal struct Continuation
    {
        public uint Value;
        public int Shift;
    }
}

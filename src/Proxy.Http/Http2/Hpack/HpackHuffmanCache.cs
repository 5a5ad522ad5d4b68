namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// The last few short Huffman-coded values a decoder saw, with their decodings. Peers that do not index their
/// response fields (nginx sends date, content-type and content-length as literals without indexing on every
/// response) repeat the same coded bytes block after block; comparing them costs a fraction of decoding them again
/// (the decode walks the code tree a nibble at a time, each step waiting on the last). Decoding is a function of
/// the coded bytes, so a hit returns exactly what the decode would; a string that fails to decode is never stored.
/// </summary>
internal sealed class HpackHuffmanCache
{
    /// <summary>Longest coded string kept (longer ones are decoded as before).</summary>
    public const int MaxEncodedLength = 48;

    private const int Slots = 8;
    private const int MaxDecodedLength = MaxEncodedLength * 8 / 5;

    private readonly byte[] _encoded = new byte[Slots * MaxEncodedLength];
    private readonly byte[] _decoded = new byte[Slots * MaxDecodedLength];
    private readonly int[] _encodedLengths = new int[Slots]; // 0: empty slot
    private readonly int[] _decodedLengths = new int[Slots];
    private int _next;

    /// <summary>
    /// The decoding of <paramref name="encoded"/> (1 to <see cref="MaxEncodedLength"/> bytes), valid until the next
    /// call. Throws <see cref="HpackDecodingException"/> (InvalidHuffman) as <see cref="HpackHuffman.Decode"/> does.
    /// </summary>
    public ReadOnlySpan<byte> Decode(ReadOnlySpan<byte> encoded)
    {
        var lengths = _encodedLengths;
        for (var i = 0; i < Slots; i++)
        {
            if (lengths[i] == encoded.Length && encoded.SequenceEqual(_encoded.AsSpan(i * MaxEncodedLength, encoded.Length)))
            {
                return _decoded.AsSpan(i * MaxDecodedLength, _decodedLengths[i]);
            }
        }

        // Round robin: a peer's repeating values number a handful per block, fewer than the slots.
        var slot = _next;
        _next = (slot + 1) % Slots;
        lengths[slot] = 0;
        var decoded = _decoded.AsSpan(slot * MaxDecodedLength, MaxDecodedLength);
        var written = HpackHuffman.Decode(encoded, decoded);
        encoded.CopyTo(_encoded.AsSpan(slot * MaxEncodedLength));
        lengths[slot] = encoded.Length;
        _decodedLengths[slot] = written;
        return decoded[..written];
    }
}

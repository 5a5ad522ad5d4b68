using System.Buffers;

namespace Proxy.Http.Http2.Hpack;

/// <summary>How <see cref="HpackEncoder.EncodeHeader"/> represents a field.</summary>
public enum HpackIndexing
{
    /// <summary>The encoder's policy (see the README): indexed when the field is in a table, else literal with or without indexing.</summary>
    Auto,
    /// <summary>Literal with incremental indexing (RFC 7541 §6.2.1) unless the field is already in a table.</summary>
    Incremental,
    /// <summary>Literal without indexing (§6.2.2) unless the field is already in a table.</summary>
    WithoutIndexing,
    /// <summary>Literal never indexed (§6.2.3), always: for sensitive values and to forward a field received that way.</summary>
    NeverIndexed,
}

/// <summary>Encoder settings; immutable.</summary>
public sealed record HpackEncoderOptions
{
    /// <summary>
    /// Largest dynamic table the encoder uses, whatever the peer's SETTINGS_HEADER_TABLE_SIZE allows (memory per
    /// connection). Default 4096, the protocol's initial size.
    /// </summary>
    public int MaxDynamicTableSize { get; init; } = HpackDecoder.DefaultHeaderTableSize;

    /// <summary>Send <c>cookie</c> and <c>set-cookie</c> never indexed (default true). When false, only short cookie values are.</summary>
    public bool NeverIndexCookies { get; init; } = true;

    /// <summary>Cookie values shorter than this are never indexed even when <see cref="NeverIndexCookies"/> is false (RFC 7541 §7.1.3: short values are easy to guess).</summary>
    public int ShortCookieLength { get; init; } = 20;

    /// <summary>Use Huffman coding when it is shorter (default true).</summary>
    public bool UseHuffman { get; init; } = true;
}

/// <summary>
/// HPACK encoder (RFC 7541), one per connection (it owns the connection's encoding dynamic table). For each header
/// block: <see cref="BeginHeaderBlock"/>, then <see cref="EncodeHeader"/> per field, in order. Writes to an
/// <see cref="IBufferWriter{T}"/> (one GetSpan/Advance per field) and allocates nothing per block.
/// </summary>
public sealed class HpackEncoder
{
    private const int StackNameLimit = 256;

    private readonly HpackEncoderOptions _options;
    private readonly HpackDynamicTable _table;
    private int _decoderMaxSize = HpackDecoder.DefaultHeaderTableSize; // what the peer's decoder believes
    private bool _updatePending;
    private int _pendingMinSize;
    private int _pendingFinalSize;

    /// <summary>Creates an encoder; the peer's table size starts at the protocol default (4096).</summary>
    public HpackEncoder(HpackEncoderOptions? options = null)
    {
        _options = options ?? new HpackEncoderOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxDynamicTableSize);
        var size = Math.Min(_options.MaxDynamicTableSize, HpackDecoder.DefaultHeaderTableSize);
        _table = new HpackDynamicTable(_options.MaxDynamicTableSize);
        _table.SetMaxSize(size);
        if (size != _decoderMaxSize)
        {
            // Using less than the peer allows is legal, but say so, so both tables evict alike.
            _updatePending = true;
            _pendingMinSize = size;
            _pendingFinalSize = size;
        }
    }

    /// <summary>The encoding dynamic table (for tests and diagnostics).</summary>
    public HpackDynamicTable DynamicTable => _table;

    /// <summary>
    /// Applies the peer's SETTINGS_HEADER_TABLE_SIZE. The table shrinks or grows (up to the option's cap) at the
    /// start of the next block, which begins with the size update(s) the peer's decoder needs: the smallest size
    /// since the last block, then the final one (RFC 7541 §4.2).
    /// </summary>
    public void SetMaxDynamicTableSize(int peerHeaderTableSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(peerHeaderTableSize);
        var size = Math.Min(peerHeaderTableSize, _options.MaxDynamicTableSize);
        _pendingMinSize = _updatePending ? Math.Min(_pendingMinSize, size) : size;
        _pendingFinalSize = size;
        _updatePending = true;
    }

    /// <summary>Starts a header block: writes any pending dynamic table size update.</summary>
    public void BeginHeaderBlock(IBufferWriter<byte> output)
    {
        if (!_updatePending)
        {
            return;
        }

        _updatePending = false;
        var span = output.GetSpan(2 * HpackInteger.MaxEncodedLength);
        var written = 0;
        if (_pendingMinSize < _pendingFinalSize && _pendingMinSize < _decoderMaxSize)
        {
            written += HpackInteger.Encode(_pendingMinSize, 5, 0x20, span);
            _table.SetMaxSize(_pendingMinSize);
        }

        if (written > 0 || _pendingFinalSize != _decoderMaxSize)
        {
            written += HpackInteger.Encode(_pendingFinalSize, 5, 0x20, span[written..]);
        }

        _table.SetMaxSize(_pendingFinalSize);
        _decoderMaxSize = _pendingFinalSize;
        output.Advance(written);
    }

    /// <summary>
    /// Encodes one field. Names should be lowercase (HTTP/2 requires it); ASCII uppercase letters are lowercased
    /// here, because HTTP/1.1 names arrive in any case. <paramref name="indexing"/> overrides the policy, e.g.
    /// <see cref="HpackIndexing.NeverIndexed"/> to forward a field the peer sent never indexed.
    /// </summary>
    public void EncodeHeader(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, HpackIndexing indexing = HpackIndexing.Auto)
    {
        // One vectorized scan; the copy only happens for names that are not lowercase already.
        if (name.ContainsAnyInRange((byte)'A', (byte)'Z'))
        {
            EncodeUppercaseName(output, name, value, indexing);
            return;
        }

        EncodeLowercase(output, name, value, indexing);
    }

    /// <summary>The policy's choice for a field not found whole in a table.</summary>
    internal HpackIndexing Choose(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        // Entries larger than half the table would evict most of it for a value that is unlikely to come back.
        if ((long)name.Length + value.Length + HpackDynamicTable.EntryOverhead > _table.MaxSize / 2)
        {
            return HpackIndexing.WithoutIndexing;
        }

        // Switch on length first so most names cost one comparison at most.
        switch (name.Length)
        {
            case 4:
                // date is indexed on purpose: every response within the same second repeats it (on the corpus,
                // indexing it saves 12% of the encoder's output); etag values are per resource.
                if (name.SequenceEqual("etag"u8))
                {
                    return HpackIndexing.WithoutIndexing;
                }

                break;
            case 5:
                if (name.SequenceEqual(":path"u8) && value.Contains((byte)'?'))
                {
                    return HpackIndexing.WithoutIndexing;
                }

                break;
            case 6:
                if (name.SequenceEqual("cookie"u8))
                {
                    return CookieIndexing(value);
                }

                break;
            case 10:
                if (name.SequenceEqual("set-cookie"u8))
                {
                    return CookieIndexing(value);
                }

                break;
            case 13:
                if (name.SequenceEqual("authorization"u8))
                {
                    return HpackIndexing.NeverIndexed;
                }

                if (name.SequenceEqual("last-modified"u8) || name.SequenceEqual("if-none-match"u8))
                {
                    return HpackIndexing.WithoutIndexing;
                }

                break;
            case 14:
                if (name.SequenceEqual("content-length"u8))
                {
                    return HpackIndexing.WithoutIndexing;
                }

                break;
            case 17:
                if (name.SequenceEqual("if-modified-since"u8))
                {
                    return HpackIndexing.WithoutIndexing;
                }

                break;
            case 19:
                if (name.SequenceEqual("proxy-authorization"u8))
                {
                    return HpackIndexing.NeverIndexed;
                }

                break;
        }

        return HpackIndexing.Incremental;
    }

    private HpackIndexing CookieIndexing(ReadOnlySpan<byte> value) =>
        _options.NeverIndexCookies || value.Length < _options.ShortCookieLength ? HpackIndexing.NeverIndexed : HpackIndexing.Incremental;

    private void EncodeUppercaseName(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, HpackIndexing indexing)
    {
        byte[]? rented = null;
        // Names are short: stack scratch for the usual case, the pool for the rest.
        var lower = name.Length <= StackNameLimit ? stackalloc byte[StackNameLimit] : (rented = ArrayPool<byte>.Shared.Rent(name.Length));
        try
        {
            lower = lower[..name.Length];
            for (var i = 0; i < name.Length; i++)
            {
                var b = name[i];
                lower[i] = (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
            }

            EncodeLowercase(output, lower, value, indexing);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void EncodeLowercase(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, HpackIndexing indexing)
    {
        var staticIndex = HpackStaticTable.Find(name, value, out var staticFull);
        if (indexing == HpackIndexing.Auto)
        {
            indexing = staticFull ? HpackIndexing.Incremental : Choose(name, value);
        }

        var nameIndex = staticIndex;
        if (indexing != HpackIndexing.NeverIndexed)
        {
            if (staticFull)
            {
                WriteIndexed(output, staticIndex);
                return;
            }

            var dynamicIndex = _table.Find(name, value, out var dynamicFull);
            if (dynamicFull)
            {
                WriteIndexed(output, HpackStaticTable.Count + 1 + dynamicIndex);
                return;
            }

            if (nameIndex == 0 && dynamicIndex >= 0)
            {
                nameIndex = HpackStaticTable.Count + 1 + dynamicIndex;
            }
        }

        // Upper bound: representation byte + index or name length + name + value length + value.
        var span = output.GetSpan((3 * HpackInteger.MaxEncodedLength) + name.Length + value.Length);
        int written;
        switch (indexing)
        {
            case HpackIndexing.Incremental:
                written = HpackInteger.Encode(nameIndex, 6, 0x40, span);
                break;
            case HpackIndexing.NeverIndexed:
                written = HpackInteger.Encode(nameIndex, 4, 0x10, span);
                break;
            default:
                written = HpackInteger.Encode(nameIndex, 4, 0x00, span);
                break;
        }

        if (nameIndex == 0)
        {
            written += WriteString(name, span[written..]);
        }

        written += WriteString(value, span[written..]);
        output.Advance(written);
        if (indexing == HpackIndexing.Incremental)
        {
            _table.Add(name, value);
        }
    }

    private static void WriteIndexed(IBufferWriter<byte> output, int index)
    {
        var span = output.GetSpan(HpackInteger.MaxEncodedLength);
        output.Advance(HpackInteger.Encode(index, 7, 0x80, span));
    }

    private int WriteString(ReadOnlySpan<byte> text, Span<byte> destination)
    {
        if (_options.UseHuffman)
        {
            var huffmanLength = HpackHuffman.EncodedLength(text);
            if (huffmanLength < text.Length)
            {
                var n = HpackInteger.Encode(huffmanLength, 7, 0x80, destination);
                return n + HpackHuffman.Encode(text, destination[n..]);
            }
        }

        var written = HpackInteger.Encode(text.Length, 7, 0x00, destination);
        text.CopyTo(destination[written..]);
        return written + text.Length;
    }
}

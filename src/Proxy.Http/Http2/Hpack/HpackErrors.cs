namespace Proxy.Http.Http2.Hpack;

/// <summary>Why a header block could not be decoded. Every value is a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3).</summary>
public enum HpackDecodingError
{
    /// <summary>A prefixed integer larger than <see cref="int.MaxValue"/>, or encoded with redundant continuation bytes (RFC 7541 §5.1).</summary>
    IntegerOverflow,
    /// <summary>Index 0, or an index past the end of the static plus dynamic table (RFC 7541 §2.3.3).</summary>
    InvalidIndex,
    /// <summary>Huffman string containing EOS, padding longer than 7 bits, or padding that is not all ones (RFC 7541 §5.2).</summary>
    InvalidHuffman,
    /// <summary>A string literal longer than the decoder's MaxStringLength.</summary>
    StringTooLong,
    /// <summary>A dynamic table size update above the limit this side advertised in SETTINGS_HEADER_TABLE_SIZE (RFC 7541 §6.3).</summary>
    TableSizeUpdateTooLarge,
    /// <summary>A dynamic table size update after the first header field of a block (RFC 7541 §4.2).</summary>
    TableSizeUpdateNotAtStart,
    /// <summary>The advertised limit was lowered below the table's size and the next block did not start with an update (RFC 7541 §4.2).</summary>
    TableSizeUpdateMissing,
    /// <summary>The block ended (END_HEADERS) in the middle of a representation.</summary>
    TruncatedBlock,
}

/// <summary>
/// A header block that cannot be decoded. The dynamic table is no longer in step with the peer's encoder, so the
/// connection must end with GOAWAY(COMPRESSION_ERROR); the decoder must not be used again.
/// </summary>
public sealed class HpackDecodingException : Exception
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public HpackDecodingException(HpackDecodingError error)
        : base(Describe(error))
    {
        Error = error;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackDecodingException()
        : this(HpackDecodingError.TruncatedBlock)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackDecodingException(string message)
        : base(message)
    {
        Error = HpackDecodingError.TruncatedBlock;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackDecodingException(string message, Exception innerException)
        : base(message, innerException)
    {
        Error = HpackDecodingError.TruncatedBlock;
    }

    /// <summary>The reason, for logs and the GOAWAY debug data.</summary>
    public HpackDecodingError Error { get; }

    /// <summary>A short sentence for each reason.</summary>
    public static string Describe(HpackDecodingError error) => error switch
    {
        HpackDecodingError.IntegerOverflow => "HPACK integer overflows or has redundant continuation bytes",
        HpackDecodingError.InvalidIndex => "HPACK index is 0 or past the end of the header table",
        HpackDecodingError.InvalidHuffman => "HPACK Huffman string contains EOS or invalid padding",
        HpackDecodingError.StringTooLong => "HPACK string literal exceeds the decoder's limit",
        HpackDecodingError.TableSizeUpdateTooLarge => "HPACK dynamic table size update exceeds SETTINGS_HEADER_TABLE_SIZE",
        HpackDecodingError.TableSizeUpdateNotAtStart => "HPACK dynamic table size update after a header field",
        HpackDecodingError.TableSizeUpdateMissing => "HPACK dynamic table size update required after SETTINGS_HEADER_TABLE_SIZE was lowered",
        HpackDecodingError.TruncatedBlock => "HPACK header block ends inside a representation",
        _ => "HPACK decoding error",
    };
}

/// <summary>
/// The decoded header list exceeded <see cref="HpackDecoder.MaxHeaderListSize"/> (RFC 9113 §6.5.2: name + value + 32
/// per field). Thrown only once the whole block has been processed, so the dynamic table is still in step with the
/// peer: the connection may answer 431 or RST_STREAM(REFUSED_STREAM/PROTOCOL_ERROR) and keep going. Fields after the
/// limit was crossed were not delivered to the handler.
/// </summary>
public sealed class HpackHeaderListTooLargeException : Exception
{
    /// <summary>Creates the exception with the limit and the size the block would have had.</summary>
    public HpackHeaderListTooLargeException(long limit, long size)
        : base($"decoded header list size {size} exceeds the limit {limit}")
    {
        Limit = limit;
        Size = size;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackHeaderListTooLargeException()
        : this(0, 0)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackHeaderListTooLargeException(string message)
        : base(message)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public HpackHeaderListTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The limit in force.</summary>
    public long Limit { get; }

    /// <summary>The decoded size of the whole block.</summary>
    public long Size { get; }
}

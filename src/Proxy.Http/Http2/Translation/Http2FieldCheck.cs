namespace Proxy.Http.Http2.Translation;

/// <summary>Why a decoded HTTP/2 field section is malformed (RFC 9113 §8.1.1, §8.2, §8.3): a stream error PROTOCOL_ERROR.</summary>
public enum Http2FieldError
{
    None,

    /// <summary>An empty name, or a name with a character outside the token set (uppercase included, §8.2.1).</summary>
    InvalidName,

    /// <summary>A value containing NUL, CR or LF, or starting or ending with whitespace (§8.2.1).</summary>
    InvalidValue,

    /// <summary>Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding or Upgrade (§8.2.2).</summary>
    ConnectionSpecific,

    /// <summary><c>te</c> with a value other than <c>trailers</c> (§8.2.2).</summary>
    InvalidTe,

    /// <summary>A pseudo-header this side does not know or that belongs to the other direction (§8.3).</summary>
    UnknownPseudoHeader,

    /// <summary>A pseudo-header sent twice.</summary>
    DuplicatePseudoHeader,

    /// <summary>A pseudo-header after a regular field (§8.3).</summary>
    PseudoHeaderAfterField,

    /// <summary>A pseudo-header in trailers (§8.1).</summary>
    PseudoHeaderInTrailers,

    /// <summary>:method, :scheme or :path missing (or, for CONNECT, :authority missing or :scheme/:path present) (§8.3.1, §8.5).</summary>
    MissingPseudoHeader,

    /// <summary>An empty :path, or one that is neither origin-form nor <c>*</c> for OPTIONS (§8.3.1).</summary>
    InvalidPath,

    /// <summary>A Host field that differs from :authority (§8.3.1).</summary>
    HostMismatch,

    /// <summary>The translated head is larger than the configured limit.</summary>
    TooLarge,

    /// <summary>:status missing, duplicated or not three digits (§8.3.2).</summary>
    InvalidStatus,
}

/// <summary>Field rules every HTTP/2 field section follows, whatever its direction (RFC 9113 §8.2).</summary>
public static class Http2FieldCheck
{
    // RFC 9110 tchar minus uppercase letters: HTTP/2 names are lowercase on the wire (§8.2.1).
    private static readonly bool[] s_nameChars = BuildNameChars();

    /// <summary>One-sentence description of <paramref name="error"/> for logs and proxy-made answers.</summary>
    public static string Describe(Http2FieldError error) => error switch
    {
        Http2FieldError.None => "no error",
        Http2FieldError.InvalidName => "a header name is empty, has uppercase letters or characters outside the token set",
        Http2FieldError.InvalidValue => "a header value contains NUL, CR or LF, or starts or ends with whitespace",
        Http2FieldError.ConnectionSpecific => "a connection-specific header (connection, keep-alive, proxy-connection, transfer-encoding, upgrade) was sent",
        Http2FieldError.InvalidTe => "the te header has a value other than \"trailers\"",
        Http2FieldError.UnknownPseudoHeader => "an unknown pseudo-header, or one of the other direction, was sent",
        Http2FieldError.DuplicatePseudoHeader => "a pseudo-header was sent twice",
        Http2FieldError.PseudoHeaderAfterField => "a pseudo-header came after a regular header",
        Http2FieldError.PseudoHeaderInTrailers => "the trailers contain a pseudo-header",
        Http2FieldError.MissingPseudoHeader => "a required pseudo-header is missing (:method, :scheme and :path; :authority for CONNECT)",
        Http2FieldError.InvalidPath => "the :path is empty or not an absolute path",
        Http2FieldError.HostMismatch => "the host header differs from :authority",
        Http2FieldError.TooLarge => "the header section is larger than the configured limit",
        Http2FieldError.InvalidStatus => "the :status pseudo-header is missing, repeated or not three digits",
        _ => error.ToString(),
    };

    /// <summary>Whether <paramref name="name"/> is a valid regular (non-pseudo) field name.</summary>
    public static bool IsValidName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty)
        {
            return false;
        }

        var chars = s_nameChars;
        foreach (var b in name)
        {
            if (!chars[b])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether <paramref name="value"/> is a valid field value (no NUL/CR/LF, no surrounding whitespace).</summary>
    public static bool IsValidValue(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            return true;
        }

        if (value[0] is (byte)' ' or (byte)'\t' || value[^1] is (byte)' ' or (byte)'\t')
        {
            return false;
        }

        // Vectorized: these three bytes are rare in real values.
        return value.IndexOfAny((byte)0, (byte)'\r', (byte)'\n') < 0;
    }

    /// <summary>
    /// Checks a regular field of any section (request, response, trailers): name, value, connection-specific
    /// fields, and <c>te</c> other than <c>trailers</c>.
    /// </summary>
    public static Http2FieldError CheckRegular(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (!IsValidName(name))
        {
            return Http2FieldError.InvalidName;
        }

        if (!IsValidValue(value))
        {
            return Http2FieldError.InvalidValue;
        }

        if (IsConnectionSpecific(name))
        {
            return Http2FieldError.ConnectionSpecific;
        }

        if (name.SequenceEqual("te"u8) && !value.SequenceEqual("trailers"u8))
        {
            return Http2FieldError.InvalidTe;
        }

        return Http2FieldError.None;
    }

    /// <summary>Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); names already lowercase.</summary>
    public static bool IsConnectionSpecific(ReadOnlySpan<byte> name) => name.Length switch
    {
        7 => name.SequenceEqual("upgrade"u8),
        10 => name.SequenceEqual("connection"u8) || name.SequenceEqual("keep-alive"u8),
        16 => name.SequenceEqual("proxy-connection"u8),
        17 => name.SequenceEqual("transfer-encoding"u8),
        _ => false,
    };

    private static bool[] BuildNameChars()
    {
        var chars = new bool[256];
        for (var c = 'a'; c <= 'z'; c++)
        {
            chars[c] = true;
        }

        for (var c = '0'; c <= '9'; c++)
        {
            chars[c] = true;
        }

        foreach (var c in "!#$%&'*+-.^_`|~")
        {
            chars[c] = true;
        }

        return chars;
    }
}

using System.Buffers;
using System.Text;

namespace Proxy.Http.Http1;

/// <summary>Character classes and small helpers of RFC 9110/9112 grammar, all on bytes.</summary>
internal static class Http1Syntax
{
    /// <summary>tchar (RFC 9110 §5.6.2). SearchValues picks a vectorized lookup.</summary>
    internal static readonly SearchValues<byte> TokenChars = SearchValues.Create(
        "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    /// <summary>Bytes never allowed in a field value: CTLs other than HTAB, and DEL (field-vchar / obs-text / SP / HTAB are fine).</summary>
    internal static readonly SearchValues<byte> InvalidValueChars = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127]);

    internal const byte CR = (byte)'\r';
    internal const byte LF = (byte)'\n';
    internal const byte SP = (byte)' ';
    internal const byte HTAB = (byte)'\t';

    internal static bool IsOws(byte b) => b == SP || b == HTAB;

    /// <summary>
    /// Splits an absolute-form target (<c>scheme "://" authority path-abempty [ "?" query ]</c>): where the authority
    /// starts (after "://"; 0 without it) and where the path or query starts (the target's length when neither follows).
    /// </summary>
    internal static void SplitAbsoluteForm(ReadOnlySpan<byte> target, out int authorityStart, out int pathStart)
    {
        var sep = target.IndexOf("://"u8);
        authorityStart = sep < 0 ? 0 : sep + 3;
        var end = target[authorityStart..].IndexOfAny((byte)'/', (byte)'?');
        pathStart = end < 0 ? target.Length : authorityStart + end;
    }

    /// <summary>Removes leading and trailing SP/HTAB.</summary>
    internal static ReadOnlySpan<byte> TrimOws(ReadOnlySpan<byte> value)
    {
        var start = 0;
        while (start < value.Length && IsOws(value[start]))
        {
            start++;
        }

        var end = value.Length;
        while (end > start && IsOws(value[end - 1]))
        {
            end--;
        }

        return value[start..end];
    }

    /// <summary>
    /// Next element of a comma-separated list (RFC 9110 §5.6.1), trimmed; empty elements are returned
    /// as empty spans so callers can skip them. Returns false when the list is exhausted.
    /// </summary>
    internal static bool NextListElement(ref ReadOnlySpan<byte> list, out ReadOnlySpan<byte> element)
    {
        if (list.IsEmpty)
        {
            element = default;
            return false;
        }

        var comma = list.IndexOf((byte)',');
        if (comma < 0)
        {
            element = TrimOws(list);
            list = default;
        }
        else
        {
            element = TrimOws(list[..comma]);
            list = list[(comma + 1)..];
        }

        return true;
    }

    /// <summary>True when the comma-separated <paramref name="list"/> has an element equal (ASCII case-insensitively) to <paramref name="token"/>.</summary>
    internal static bool ListContains(ReadOnlySpan<byte> list, ReadOnlySpan<byte> token)
    {
        while (NextListElement(ref list, out var element))
        {
            if (Ascii.EqualsIgnoreCase(element, token))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Recognizes the fields the codec interprets, by length first so most names cost one compare.</summary>
    internal static Http1KnownHeader Classify(ReadOnlySpan<byte> name) => name.Length switch
    {
        2 when Ascii.EqualsIgnoreCase(name, "TE"u8) => Http1KnownHeader.TE,
        4 when Ascii.EqualsIgnoreCase(name, "Host"u8) => Http1KnownHeader.Host,
        6 when Ascii.EqualsIgnoreCase(name, "Expect"u8) => Http1KnownHeader.Expect,
        7 when Ascii.EqualsIgnoreCase(name, "Upgrade"u8) => Http1KnownHeader.Upgrade,
        7 when Ascii.EqualsIgnoreCase(name, "Trailer"u8) => Http1KnownHeader.Trailer,
        10 when Ascii.EqualsIgnoreCase(name, "Connection"u8) => Http1KnownHeader.Connection,
        10 when Ascii.EqualsIgnoreCase(name, "Keep-Alive"u8) => Http1KnownHeader.KeepAlive,
        14 when Ascii.EqualsIgnoreCase(name, "Content-Length"u8) => Http1KnownHeader.ContentLength,
        16 when Ascii.EqualsIgnoreCase(name, "Proxy-Connection"u8) => Http1KnownHeader.ProxyConnection,
        17 when Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8) => Http1KnownHeader.TransferEncoding,
        _ => Http1KnownHeader.None,
    };

    internal static bool IsHopByHop(Http1KnownHeader known) => known is Http1KnownHeader.Connection
        or Http1KnownHeader.KeepAlive or Http1KnownHeader.ProxyConnection or Http1KnownHeader.TE
        or Http1KnownHeader.Trailer or Http1KnownHeader.TransferEncoding or Http1KnownHeader.Upgrade;

    /// <summary>Parses 1*DIGIT into a non-negative long; throws on anything else or on overflow.</summary>
    internal static long ParseContentLength(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidContentLength);
        }

        long result = 0;
        foreach (var b in value)
        {
            var digit = (uint)(b - '0');
            if (digit > 9)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidContentLength);
            }

            // Overflow check before the multiply: result * 10 + digit must stay <= long.MaxValue.
            if (result > (long.MaxValue - digit) / 10)
            {
                Http1ParseErrors.Throw(Http1ParseError.ContentLengthOverflow);
            }

            result = (result * 10) + digit;
        }

        return result;
    }

    /// <summary>Parses exactly "HTTP/" DIGIT "." DIGIT; 1.0 and 1.1 are supported, other digits are 505.</summary>
    internal static Http1Version ParseVersion(ReadOnlySpan<byte> version)
    {
        if (version.Length != 8 || !version.StartsWith("HTTP/"u8) || version[6] != '.'
            || !char.IsAsciiDigit((char)version[5]) || !char.IsAsciiDigit((char)version[7]))
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidVersion);
        }

        if (version[5] == '1')
        {
            if (version[7] == '1')
            {
                return Http1Version.Http11;
            }

            if (version[7] == '0')
            {
                return Http1Version.Http10;
            }
        }

        Http1ParseErrors.Throw(Http1ParseError.UnsupportedVersion);
        return default;
    }

    /// <summary>
    /// Validates a chunk-ext (RFC 9112 §7.1.1) strictly: <c>*( ";" token [ "=" ( token / quoted-string ) ] )</c>,
    /// no whitespace anywhere (the RFC's BWS is not sent by real implementations and invites ambiguity).
    /// </summary>
    internal static bool IsValidChunkExtensions(ReadOnlySpan<byte> ext)
    {
        var i = 0;
        while (i < ext.Length)
        {
            if (ext[i] != ';')
            {
                return false;
            }

            i++;
            var nameLength = ext[i..].IndexOfAnyExcept(TokenChars);
            if (nameLength < 0)
            {
                nameLength = ext.Length - i;
            }

            if (nameLength == 0)
            {
                return false;
            }

            i += nameLength;
            if (i == ext.Length || ext[i] == ';')
            {
                continue;
            }

            if (ext[i] != '=')
            {
                return false;
            }

            i++;
            if (i == ext.Length)
            {
                return false;
            }

            if (ext[i] == '"')
            {
                i++;
                var closed = false;
                while (i < ext.Length)
                {
                    var b = ext[i];
                    if (b == '"')
                    {
                        closed = true;
                        i++;
                        break;
                    }

                    if (b == '\\')
                    {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                        if (i + 1 == ext.Length || !IsQuotedPairChar(ext[i + 1]))
                        {
                            return false;
                        }

                        i += 2;
                        continue;
                    }

                    if (!IsQdText(b))
                    {
                        return false;
                    }

                    i++;
                }

                if (!closed)
                {
                    return false;
                }
            }
            else
            {
                var valueLength = ext[i..].IndexOfAnyExcept(TokenChars);
                if (valueLength < 0)
                {
                    valueLength = ext.Length - i;
                }

                if (valueLength == 0)
                {
                    return false;
                }

                i += valueLength;
            }
        }

        return true;
    }

    private static bool IsQdText(byte b) => b == HTAB || b == SP || b == 0x21 || (b >= 0x23 && b <= 0x5B) || (b >= 0x5D && b <= 0x7E) || b >= 0x80;

    private static bool IsQuotedPairChar(byte b) => b == HTAB || (b >= 0x20 && b != 0x7F);
}

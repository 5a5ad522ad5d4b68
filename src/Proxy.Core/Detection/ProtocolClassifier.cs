namespace Proxy.Core.Detection;

/// <summary>What the first bytes of a client connection say it speaks.</summary>
public enum Protocol : byte
{
    /// <summary>Nothing we recognise (or nothing at all): forwarded as opaque TCP.</summary>
    Opaque,

    /// <summary>An HTTP/1.x request line: a token method followed by SP and the first character of a target.</summary>
    Http1,

    /// <summary>The HTTP/2 connection preface sent with prior knowledge (h2c, gRPC without TLS).</summary>
    Http2,

    /// <summary>A TLS handshake record carrying a ClientHello.</summary>
    Tls,
}

/// <summary>
/// Classifies the first bytes a client sends. Pure: no state, no I/O, no allocation.
/// <para>Kestrel-style contract: <see cref="TryClassify"/> returns false when the bytes seen so far are a
/// prefix of something it would recognise and more bytes could change the answer ("need more"); it never
/// needs more than <see cref="MaxBytes"/> bytes to decide.</para>
/// <list type="bullet">
/// <item>TLS: <c>16 03 {00..04} len len 01</c>: a handshake record of a version SSL 3.0..TLS 1.3 on the wire,
/// a length of 1..2^14 (RFC 8446 5.1), whose first message is a ClientHello (type 1).</item>
/// <item>HTTP/2: the 24-byte preface <c>PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n</c> exactly (RFC 9113 3.4).</item>
/// <item>HTTP/1.x: a method (RFC 9110 9.1: a token), SP, then the first character of the request target.
/// For the methods of RFC 9110/5789 (GET ... PATCH) any visible character may start the target; for
/// other tokens it must be <c>/</c> or <c>*</c> (origin or asterisk form). Decision: that keeps client-first
/// text protocols such as Redis inline commands (<c>SET key v</c>) or memcached (<c>get key</c>) opaque.
/// Only a prefix of a known method (or known method + SP) waits for more bytes: an unknown token split
/// across TCP segments is opaque.</item>
/// <item>Anything else is opaque.</item>
/// </list>
/// </summary>
public static class ProtocolClassifier
{
    /// <summary>The most bytes the classifier ever needs (the HTTP/2 preface).</summary>
    public const int MaxBytes = 24;

    /// <summary>Largest TLSPlaintext.length (2^14).</summary>
    private const int MaxTlsRecordLength = 1 << 14;

    private static ReadOnlySpan<byte> Http2Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>Decides the protocol from the first bytes of a connection.</summary>
    /// <returns>False when more bytes are needed (then <paramref name="protocol"/> is <see cref="Protocol.Opaque"/>).</returns>
    public static bool TryClassify(ReadOnlySpan<byte> data, out Protocol protocol)
    {
        protocol = Protocol.Opaque;
        if (data.IsEmpty)
        {
            return false;
        }

        if (data[0] == 0x16)
        {
            return TryClassifyTls(data, out protocol);
        }

        var preface = Http2Preface;
        if (data.Length < preface.Length ? preface.StartsWith(data) : data.StartsWith(preface))
        {
            if (data.Length < preface.Length)
            {
                return false;
            }

            protocol = Protocol.Http2;
            return true;
        }

        return TryClassifyHttp1(data, out protocol);
    }

    private static bool TryClassifyTls(ReadOnlySpan<byte> data, out Protocol protocol)
    {
        protocol = Protocol.Opaque;

        // [0] content type 22 (handshake) is checked by the caller.
        if (data.Length < 2)
        {
            return false;
        }

        if (data[1] != 0x03)
        {
            return true;
        }

        if (data.Length < 3)
        {
            return false;
        }

        if (data[2] > 0x04)
        {
            return true;
        }

        if (data.Length < 5)
        {
            // The high length byte alone can already rule out a too-long record.
            if (data.Length == 4 && data[3] > (MaxTlsRecordLength >> 8))
            {
                return true;
            }

            return false;
        }

        var length = (data[3] << 8) | data[4];
        if (length == 0 || length > MaxTlsRecordLength)
        {
            return true;
        }

        if (data.Length < 6)
        {
            return false;
        }

        if (data[5] == 0x01)
        {
            protocol = Protocol.Tls;
        }

        return true;
    }

    private static bool TryClassifyHttp1(ReadOnlySpan<byte> data, out Protocol protocol)
    {
        protocol = Protocol.Opaque;
        var i = 0;
        while (i < data.Length && IsTokenChar(data[i]))
        {
            i++;
        }

        if (i == data.Length)
        {
            // Only token characters so far: wait only if they can still become a known method.
            return !IsKnownMethodPrefix(data);
        }

        if (i == 0 || data[i] != (byte)' ')
        {
            return true;
        }

        var known = IsKnownMethod(data[..i]);
        if (i + 1 == data.Length)
        {
            // "METHOD " without the target yet. Unknown tokens wait too (the next byte decides), but never
            // beyond MaxBytes.
            return data.Length >= MaxBytes;
        }

        var first = data[i + 1];
        if (known ? first is > 0x20 and < 0x7F : first is (byte)'/' or (byte)'*')
        {
            protocol = Protocol.Http1;
        }

        return true;
    }

    /// <summary>tchar (RFC 9110 5.6.2): ALPHA / DIGIT / "!#$%&amp;'*+-.^_`|~".</summary>
    internal static bool IsTokenChar(byte b) => b switch
    {
        >= (byte)'a' and <= (byte)'z' => true,
        >= (byte)'A' and <= (byte)'Z' => true,
        >= (byte)'0' and <= (byte)'9' => true,
        (byte)'!' or (byte)'#' or (byte)'$' or (byte)'%' or (byte)'&' or (byte)'\'' or (byte)'*'
            or (byte)'+' or (byte)'-' or (byte)'.' or (byte)'^' or (byte)'_' or (byte)'`' or (byte)'|' or (byte)'~' => true,
        _ => false,
    };

    private static bool IsKnownMethod(ReadOnlySpan<byte> method) =>
        method.SequenceEqual("GET"u8) || method.SequenceEqual("POST"u8) || method.SequenceEqual("PUT"u8)
        || method.SequenceEqual("HEAD"u8) || method.SequenceEqual("DELETE"u8) || method.SequenceEqual("OPTIONS"u8)
        || method.SequenceEqual("PATCH"u8) || method.SequenceEqual("CONNECT"u8) || method.SequenceEqual("TRACE"u8);

    private static bool IsKnownMethodPrefix(ReadOnlySpan<byte> data) =>
        "GET"u8.StartsWith(data) || "POST"u8.StartsWith(data) || "PUT"u8.StartsWith(data)
        || "HEAD"u8.StartsWith(data) || "DELETE"u8.StartsWith(data) || "OPTIONS"u8.StartsWith(data)
        || "PATCH"u8.StartsWith(data) || "CONNECT"u8.StartsWith(data) || "TRACE"u8.StartsWith(data);
}

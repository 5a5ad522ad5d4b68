using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>
/// Writes request and response heads to an <see cref="IBufferWriter{T}"/> (e.g. a PipeWriter) without
/// allocating. The whole-head methods re-emit a parsed head as the proxy forwards it: the proxy's own
/// version (HTTP/1.1), every field except hop-by-hop ones, then the framing and upgrade fields the next hop
/// needs, then caller-supplied extra field lines, then the empty line.
/// </summary>
public static class Http1HeadWriter
{
    /// <summary>Writes <c>method SP target SP version CRLF</c>.</summary>
    public static void WriteRequestLine(IBufferWriter<byte> writer, ReadOnlySpan<byte> method, ReadOnlySpan<byte> target, Http1Version version)
    {
        writer.Write(method);
        writer.Write(" "u8);
        writer.Write(target);
        writer.Write(version == Http1Version.Http11 ? " HTTP/1.1\r\n"u8 : " HTTP/1.0\r\n"u8);
    }

    /// <summary>Writes <c>version SP status SP reason CRLF</c>.</summary>
    public static void WriteStatusLine(IBufferWriter<byte> writer, Http1Version version, int statusCode, ReadOnlySpan<byte> reasonPhrase)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(statusCode, 100);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(statusCode, 999);
        writer.Write(version == Http1Version.Http11 ? "HTTP/1.1 "u8 : "HTTP/1.0 "u8);
        var span = writer.GetSpan(4);
        span[0] = (byte)('0' + (statusCode / 100));
        span[1] = (byte)('0' + (statusCode / 10 % 10));
        span[2] = (byte)('0' + (statusCode % 10));
        span[3] = (byte)' ';
        writer.Advance(4);
        writer.Write(reasonPhrase);
        writer.Write("\r\n"u8);
    }

    /// <summary>Writes <c>name ": " value CRLF</c>.</summary>
    public static void WriteHeader(IBufferWriter<byte> writer, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        writer.Write(name);
        writer.Write(": "u8);
        writer.Write(value);
        writer.Write("\r\n"u8);
    }

    /// <summary>Writes every field of <paramref name="headers"/> that is not hop-by-hop, in order, names as received.</summary>
    public static void WriteEndToEndHeaders(IBufferWriter<byte> writer, Http1HeaderList headers)
    {
        for (var i = 0; i < headers.Count; i++)
        {
            if (!headers.IsHopByHop(i))
            {
                WriteHeader(writer, headers.GetName(i), headers.GetValue(i));
            }
        }
    }

    /// <summary>Writes the CRLF that ends a head.</summary>
    public static void WriteEndOfHead(IBufferWriter<byte> writer) => writer.Write("\r\n"u8);

    /// <summary>
    /// Re-emits <paramref name="head"/> for the upstream: request line (HTTP/1.1), end-to-end fields,
    /// <c>Transfer-Encoding: chunked</c> when the body is chunked, <c>Connection: upgrade</c> + Upgrade for
    /// an upgrade request, <paramref name="extraHeaderLines"/> (complete lines, each ending in CRLF), end of head.
    /// </summary>
    public static void WriteRequestHead(IBufferWriter<byte> writer, Http1RequestHead head, ReadOnlySpan<byte> extraHeaderLines = default)
    {
        WriteRequestLine(writer, head.MethodBytes, head.Target, Http1Version.Http11);
        WriteEndToEndHeaders(writer, head.Headers);
        if (head.BodyKind == Http1BodyKind.Chunked)
        {
            writer.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (head.IsUpgrade)
        {
            writer.Write("Connection: upgrade\r\n"u8);
            WriteHeader(writer, "Upgrade"u8, head.Upgrade);
        }

        writer.Write(extraHeaderLines);
        WriteEndOfHead(writer);
    }

    /// <summary>
    /// Re-emits <paramref name="head"/> for the client: status line (HTTP/1.1), end-to-end fields,
    /// <c>Transfer-Encoding: chunked</c> when the body is chunked, Upgrade fields for a 101,
    /// <paramref name="extraHeaderLines"/>, end of head.
    /// </summary>
    public static void WriteResponseHead(IBufferWriter<byte> writer, Http1ResponseHead head, ReadOnlySpan<byte> extraHeaderLines = default)
    {
        WriteStatusLine(writer, Http1Version.Http11, head.StatusCode, head.ReasonPhrase);
        WriteEndToEndHeaders(writer, head.Headers);
        if (head.BodyKind == Http1BodyKind.Chunked)
        {
            writer.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (head.StatusCode == 101)
        {
            writer.Write("Connection: upgrade\r\n"u8);
            WriteHeader(writer, "Upgrade"u8, head.Upgrade);
        }

        writer.Write(extraHeaderLines);
        WriteEndOfHead(writer);
    }
}

using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>Encodes the chunked transfer coding (RFC 9112 §7.1) into an <see cref="IBufferWriter{T}"/> without allocating.</summary>
public static class ChunkedBodyWriter
{
    /// <summary>Writes <paramref name="data"/> as one chunk; nothing for empty data (an empty chunk would end the body).</summary>
    public static void WriteChunk(IBufferWriter<byte> writer, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        WriteSizeLine(writer, data.Length);
        writer.Write(data);
        writer.Write("\r\n"u8);
    }

    /// <summary>Writes <paramref name="data"/> (e.g. a <see cref="ChunkedBodyReader"/> slice) as one chunk.</summary>
    public static void WriteChunk(IBufferWriter<byte> writer, in ReadOnlySequence<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        WriteSizeLine(writer, data.Length);
        foreach (var segment in data)
        {
            writer.Write(segment.Span);
        }

        writer.Write("\r\n"u8);
    }

    /// <summary>Writes the last chunk, the trailer field lines (each ending in CRLF, as returned by the reader) and the final CRLF.</summary>
    public static void WriteLastChunk(IBufferWriter<byte> writer, in ReadOnlySequence<byte> trailers)
    {
        writer.Write("0\r\n"u8);
        foreach (var segment in trailers)
        {
            writer.Write(segment.Span);
        }

        writer.Write("\r\n"u8);
    }

    /// <summary>Writes the last chunk without trailers.</summary>
    public static void WriteLastChunk(IBufferWriter<byte> writer) => writer.Write("0\r\n\r\n"u8);

    private static void WriteSizeLine(IBufferWriter<byte> writer, long size)
    {
        var span = writer.GetSpan(18);
        var digits = 1;
        for (var s = (ulong)size >> 4; s != 0; s >>= 4)
        {
            digits++;
        }

        for (var i = digits - 1; i >= 0; i--)
        {
            span[i] = (byte)"0123456789abcdef"[(int)(size & 0xF)];
            size >>= 4;
        }

        span[digits] = (byte)'\r';
        span[digits + 1] = (byte)'\n';
        writer.Advance(digits + 2);
    }
}

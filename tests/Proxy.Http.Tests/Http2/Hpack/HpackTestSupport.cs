using System.Buffers;
using System.Text;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Tests.Http1;

namespace Proxy.Http.Tests.Http2.Hpack;

/// <summary>Collects decoded fields as strings, remembering how each arrived.</summary>
internal sealed class RecordingHandler : IHpackHeaderHandler
{
    public List<(string Name, string Value)> Headers { get; } = [];

    /// <summary>One entry per field: 'S' static full match, 's' static name, 'L' other.</summary>
    public StringBuilder Kinds { get; } = new();

    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        Headers.Add((Hpack.Text(name), Hpack.Text(value)));
        Kinds.Append('L');
    }

    public void OnStaticIndexedHeader(int index)
    {
        Headers.Add((Hpack.Text(HpackStaticTable.Name(index)), Hpack.Text(HpackStaticTable.Value(index))));
        Kinds.Append('S');
    }

    public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value)
    {
        Headers.Add((Hpack.Text(HpackStaticTable.Name(index)), Hpack.Text(value)));
        Kinds.Append('s');
    }
}

/// <summary>Helpers shared by the HPACK tests.</summary>
internal static class Hpack
{
    public static string Text(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    public static byte[] Bytes(string text) => Encoding.Latin1.GetBytes(text);

    public static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    public static List<(string Name, string Value)> List(params string[] nameValuePairs)
    {
        var list = new List<(string, string)>();
        for (var i = 0; i < nameValuePairs.Length; i += 2)
        {
            list.Add((nameValuePairs[i], nameValuePairs[i + 1]));
        }

        return list;
    }

    /// <summary>Decodes a whole block in one piece.</summary>
    public static List<(string Name, string Value)> DecodeBlock(HpackDecoder decoder, byte[] block)
    {
        var handler = new RecordingHandler();
        decoder.Decode(block.AsSpan(), endHeaders: true, ref handler);
        return handler.Headers;
    }

    /// <summary>Decodes a block fed as pieces cut at <paramref name="cuts"/> (span overload).</summary>
    public static List<(string Name, string Value)> DecodePieces(HpackDecoder decoder, byte[] block, params int[] cuts)
    {
        var handler = new RecordingHandler();
        var start = 0;
        foreach (var cut in cuts)
        {
            decoder.Decode(block.AsSpan(start, cut - start), endHeaders: false, ref handler);
            start = cut;
        }

        decoder.Decode(block.AsSpan(start), endHeaders: true, ref handler);
        return handler.Headers;
    }

    /// <summary>Decodes a block one byte per piece.</summary>
    public static List<(string Name, string Value)> DecodeBytewise(HpackDecoder decoder, byte[] block)
    {
        var handler = new RecordingHandler();
        for (var i = 0; i < block.Length; i++)
        {
            decoder.Decode(block.AsSpan(i, 1), endHeaders: i == block.Length - 1, ref handler);
        }

        if (block.Length == 0)
        {
            decoder.Decode(ReadOnlySpan<byte>.Empty, endHeaders: true, ref handler);
        }

        return handler.Headers;
    }

    /// <summary>Decodes a block as a one-segment-per-byte sequence (sequence overload).</summary>
    public static List<(string Name, string Value)> DecodeSegmentPerByte(HpackDecoder decoder, byte[] block)
    {
        var handler = new RecordingHandler();
        var sequence = TestSequences.SegmentPerByte(block);
        decoder.Decode(in sequence, endHeaders: true, ref handler);
        return handler.Headers;
    }

    /// <summary>Encodes one header list as one block.</summary>
    public static byte[] EncodeBlock(HpackEncoder encoder, IEnumerable<(string Name, string Value)> headers)
    {
        var output = new ArrayBufferWriter<byte>();
        encoder.BeginHeaderBlock(output);
        foreach (var (name, value) in headers)
        {
            encoder.EncodeHeader(output, Bytes(name), Bytes(value));
        }

        return output.WrittenSpan.ToArray();
    }
}

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// Receives the fields of a header block from <see cref="HpackDecoder"/>, in order. Spans are valid only during the
/// call. Fields that reference the static table arrive through the two <c>OnStaticIndexedHeader</c> methods so a
/// caller can recognise pseudo-headers and well-known names by index (a switch on an int) instead of comparing bytes;
/// <see cref="HpackStaticTable.Name"/> and <see cref="HpackStaticTable.Value"/> give the bytes when needed.
/// </summary>
public interface IHpackHeaderHandler
{
    /// <summary>A field whose name came from the dynamic table or a literal.</summary>
    void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);

    /// <summary>A field that is exactly static entry <paramref name="index"/> (name and value, 1..61).</summary>
    void OnStaticIndexedHeader(int index);

    /// <summary>A field named like static entry <paramref name="index"/> with a literal value.</summary>
    void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value);
}

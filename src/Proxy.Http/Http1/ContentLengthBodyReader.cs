using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>
/// Counts a Content-Length body through: each <see cref="Read"/> returns the part of the buffer that
/// belongs to the body (a slice, no copy), never more than what remains. One instance per connection.
/// </summary>
public sealed class ContentLengthBodyReader
{
    /// <summary>Body bytes still expected.</summary>
    public long Remaining { get; private set; }

    /// <summary>All declared bytes have been read.</summary>
    public bool IsComplete => Remaining == 0;

    /// <summary>Prepares for a body of <paramref name="contentLength"/> bytes.</summary>
    public void Reset(long contentLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contentLength);
        Remaining = contentLength;
    }

    /// <summary>
    /// The body bytes at the start of <paramref name="buffer"/> (at most <see cref="Remaining"/>); the
    /// caller forwards them and advances to the returned slice's End. Bytes after it belong to the next message.
    /// </summary>
    public ReadOnlySequence<byte> Read(in ReadOnlySequence<byte> buffer)
    {
        var take = Math.Min(Remaining, buffer.Length);
        Remaining -= take;
        return buffer.Slice(0, take);
    }
}

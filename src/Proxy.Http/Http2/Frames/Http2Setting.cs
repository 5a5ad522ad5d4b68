using System.Buffers;
using System.Buffers.Binary;

namespace Proxy.Http.Http2.Frames;

/// <summary>One SETTINGS entry. <see cref="Parameter"/> may be a value outside the enum (unknown settings are ignored).</summary>
public readonly record struct Http2Setting(Http2SettingsParameter Parameter, uint Value);

/// <summary>
/// Walks the entries of a SETTINGS payload (the slice <see cref="Http2FrameReader.TryReadFrame"/> returned) without
/// copying or allocating: <c>foreach (var s in new Http2SettingsEnumerator(payload))</c>. The reader has already
/// validated length and values, so the connection only applies them in order.
/// </summary>
public struct Http2SettingsEnumerator
{
    private ReadOnlySequence<byte> _rest;

    /// <summary>Starts at the first entry of <paramref name="payload"/>.</summary>
    public Http2SettingsEnumerator(in ReadOnlySequence<byte> payload)
    {
        _rest = payload;
        Current = default;
    }

    /// <summary>The entry <see cref="MoveNext"/> read.</summary>
    public Http2Setting Current { get; private set; }

    /// <summary>For <c>foreach</c>.</summary>
    public readonly Http2SettingsEnumerator GetEnumerator() => this;

    /// <summary>Reads the next complete entry; false at the end (a trailing partial entry is not read).</summary>
    public bool MoveNext()
    {
        if (_rest.Length < Http2Constants.SettingSize)
        {
            return false;
        }

        Span<byte> scratch = stackalloc byte[Http2Constants.SettingSize];
        // Fast path: the entry lies in the first segment; copy only when it straddles two.
        var entry = _rest.FirstSpan.Length >= Http2Constants.SettingSize ? _rest.FirstSpan : Copy(_rest, scratch);
        Current = new Http2Setting((Http2SettingsParameter)BinaryPrimitives.ReadUInt16BigEndian(entry), BinaryPrimitives.ReadUInt32BigEndian(entry[2..]));
        _rest = _rest.Slice(Http2Constants.SettingSize);
        return true;
    }

    private static ReadOnlySpan<byte> Copy(in ReadOnlySequence<byte> rest, Span<byte> scratch)
    {
        rest.Slice(0, scratch.Length).CopyTo(scratch);
        return scratch;
    }
}

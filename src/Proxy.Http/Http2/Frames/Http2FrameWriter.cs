using System.Buffers;
using System.Buffers.Binary;

namespace Proxy.Http.Http2.Frames;

/// <summary>
/// Writes HTTP/2 frames into an <see cref="IBufferWriter{T}"/> (a connection's <c>PipeWriter</c>). Nothing is
/// allocated; payloads are copied straight from the caller's span or sequence into the writer's memory. The caller
/// owns flow control and SETTINGS_MAX_FRAME_SIZE for DATA (one call = one frame); HEADERS are split into
/// CONTINUATION frames here. Not synchronized: callers serialize writes per connection.
/// </summary>
public static class Http2FrameWriter
{
    /// <summary>Writes a 9-byte frame header into <paramref name="destination"/> (reserved bit sent as 0).</summary>
    public static void WriteFrameHeader(Span<byte> destination, int payloadLength, Http2FrameType type, byte flags, uint streamId)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)payloadLength, Http2Constants.MaxMaxFrameSize, nameof(payloadLength));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(streamId, Http2Constants.StreamIdMask);
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Http2Constants.FrameHeaderSize, nameof(destination));
        destination[0] = (byte)(payloadLength >> 16);
        destination[1] = (byte)(payloadLength >> 8);
        destination[2] = (byte)payloadLength;
        destination[3] = (byte)type;
        destination[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], streamId);
    }

    /// <summary>The client connection preface (an upstream connection sends it, then its SETTINGS).</summary>
    public static void WriteClientPreface(IBufferWriter<byte> output) => WritePayload(output, Http2Constants.ClientPreface);

    /// <summary>One DATA frame carrying <paramref name="data"/> (the caller keeps it within the peer's max frame size and the flow-control windows).</summary>
    public static void WriteData(IBufferWriter<byte> output, uint streamId, ReadOnlySpan<byte> data, bool endStream)
    {
        RequireStream(streamId);
        var flags = endStream ? Http2Flags.EndStream : Http2Flags.None;
        if (data.Length <= SmallPayload)
        {
            var span = output.GetSpan(Http2Constants.FrameHeaderSize + data.Length);
            WriteFrameHeader(span, data.Length, Http2FrameType.Data, flags, streamId);
            data.CopyTo(span[Http2Constants.FrameHeaderSize..]);
            output.Advance(Http2Constants.FrameHeaderSize + data.Length);
            return;
        }

        WriteHeader(output, data.Length, Http2FrameType.Data, flags, streamId);
        WritePayload(output, data);
    }

    /// <summary>One DATA frame carrying <paramref name="data"/>, e.g. a payload slice straight from the other side's read buffer.</summary>
    public static void WriteData(IBufferWriter<byte> output, uint streamId, in ReadOnlySequence<byte> data, bool endStream)
    {
        RequireStream(streamId);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(data.Length, Http2Constants.MaxMaxFrameSize, nameof(data));
        var flags = endStream ? Http2Flags.EndStream : Http2Flags.None;
        if (data.Length <= SmallPayload)
        {
            var length = (int)data.Length;
            var span = output.GetSpan(Http2Constants.FrameHeaderSize + length);
            WriteFrameHeader(span, length, Http2FrameType.Data, flags, streamId);
            data.CopyTo(span[Http2Constants.FrameHeaderSize..]);
            output.Advance(Http2Constants.FrameHeaderSize + length);
            return;
        }

        WriteHeader(output, (int)data.Length, Http2FrameType.Data, flags, streamId);
        foreach (var segment in data)
        {
            WritePayload(output, segment.Span);
        }
    }

    /// <summary>
    /// A whole field block: one HEADERS frame followed by as many CONTINUATION frames as
    /// <paramref name="maxFrameSize"/> (the peer's SETTINGS_MAX_FRAME_SIZE) requires; END_HEADERS on the last.
    /// The frames are written back to back, as RFC 9113 §4.3 requires (no other frame may come between).
    /// </summary>
    public static void WriteHeaders(IBufferWriter<byte> output, uint streamId, ReadOnlySpan<byte> fieldBlock, bool endStream, uint maxFrameSize)
    {
        RequireStream(streamId);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameSize, 1u);
        var max = (int)Math.Min(maxFrameSize, Http2Constants.MaxMaxFrameSize);
        var first = Math.Min(fieldBlock.Length, max);
        var flags = (byte)((endStream ? Http2Flags.EndStream : 0) | (first == fieldBlock.Length ? Http2Flags.EndHeaders : 0));
        if (first == fieldBlock.Length && first <= SmallPayload)
        {
            var span = output.GetSpan(Http2Constants.FrameHeaderSize + first);
            WriteFrameHeader(span, first, Http2FrameType.Headers, flags, streamId);
            fieldBlock.CopyTo(span[Http2Constants.FrameHeaderSize..]);
            output.Advance(Http2Constants.FrameHeaderSize + first);
            return;
        }

        WriteHeader(output, first, Http2FrameType.Headers, flags, streamId);
        WritePayload(output, fieldBlock[..first]);
        var rest = fieldBlock[first..];
        while (!rest.IsEmpty)
        {
            var size = Math.Min(rest.Length, max);
            WriteHeader(output, size, Http2FrameType.Continuation, size == rest.Length ? Http2Flags.EndHeaders : Http2Flags.None, streamId);
            WritePayload(output, rest[..size]);
            rest = rest[size..];
        }
    }

    /// <summary>PRIORITY (deprecated by RFC 9113 but still legal): dependency, exclusive bit, weight as sent (weight minus one).</summary>
    public static void WritePriority(IBufferWriter<byte> output, uint streamId, uint streamDependency, bool exclusive, byte weight)
    {
        RequireStream(streamId);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(streamDependency, Http2Constants.StreamIdMask);
        var span = output.GetSpan(Http2Constants.FrameHeaderSize + 5);
        WriteFrameHeader(span, 5, Http2FrameType.Priority, Http2Flags.None, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], streamDependency | (exclusive ? 0x80000000 : 0));
        span[13] = weight;
        output.Advance(Http2Constants.FrameHeaderSize + 5);
    }

    /// <summary>RST_STREAM with <paramref name="errorCode"/>.</summary>
    public static void WriteRstStream(IBufferWriter<byte> output, uint streamId, Http2ErrorCode errorCode)
    {
        RequireStream(streamId);
        var span = output.GetSpan(Http2Constants.FrameHeaderSize + 4);
        WriteFrameHeader(span, 4, Http2FrameType.RstStream, Http2Flags.None, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], (uint)errorCode);
        output.Advance(Http2Constants.FrameHeaderSize + 4);
    }

    /// <summary>SETTINGS carrying <paramref name="settings"/> in order (the values are not checked: they are ours).</summary>
    public static void WriteSettings(IBufferWriter<byte> output, ReadOnlySpan<Http2Setting> settings)
    {
        WriteHeader(output, settings.Length * Http2Constants.SettingSize, Http2FrameType.Settings, Http2Flags.None, 0);
        foreach (var setting in settings)
        {
            var span = output.GetSpan(Http2Constants.SettingSize);
            BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)setting.Parameter);
            BinaryPrimitives.WriteUInt32BigEndian(span[2..], setting.Value);
            output.Advance(Http2Constants.SettingSize);
        }
    }

    /// <summary>The empty SETTINGS frame with ACK.</summary>
    public static void WriteSettingsAck(IBufferWriter<byte> output) => WriteHeader(output, 0, Http2FrameType.Settings, Http2Flags.Ack, 0);

    /// <summary>PING with 8 opaque bytes (<paramref name="ack"/>: the answer echoing a received <see cref="Http2Frame.PingData"/>).</summary>
    public static void WritePing(IBufferWriter<byte> output, ulong data, bool ack)
    {
        var span = output.GetSpan(Http2Constants.FrameHeaderSize + 8);
        WriteFrameHeader(span, 8, Http2FrameType.Ping, ack ? Http2Flags.Ack : Http2Flags.None, 0);
        BinaryPrimitives.WriteUInt64BigEndian(span[9..], data);
        output.Advance(Http2Constants.FrameHeaderSize + 8);
    }

    /// <summary>GOAWAY: last processed stream, error code, optional debug data (e.g. the ASCII reason).</summary>
    public static void WriteGoAway(IBufferWriter<byte> output, uint lastStreamId, Http2ErrorCode errorCode, ReadOnlySpan<byte> debugData = default)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(lastStreamId, Http2Constants.StreamIdMask);
        var span = output.GetSpan(Http2Constants.FrameHeaderSize + 8);
        WriteFrameHeader(span, 8 + debugData.Length, Http2FrameType.GoAway, Http2Flags.None, 0);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], lastStreamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[13..], (uint)errorCode);
        output.Advance(Http2Constants.FrameHeaderSize + 8);
        WritePayload(output, debugData);
    }

    /// <summary>WINDOW_UPDATE for a stream, or the connection (stream 0); increment 1..2^31-1.</summary>
    public static void WriteWindowUpdate(IBufferWriter<byte> output, uint streamId, uint increment)
    {
        ArgumentOutOfRangeException.ThrowIfZero(increment);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(increment, (uint)Http2Constants.MaxWindowSize);
        var span = output.GetSpan(Http2Constants.FrameHeaderSize + 4);
        WriteFrameHeader(span, 4, Http2FrameType.WindowUpdate, Http2Flags.None, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], increment);
        output.Advance(Http2Constants.FrameHeaderSize + 4);
    }

    // A frame whose payload is at most this is written with one GetSpan and one Advance (a pipe locks on each); larger
    // payloads are copied in the pieces the writer has, so a pipe never allocates an oversized segment for them.
    private const int SmallPayload = 1024;

    private static void RequireStream(uint streamId) => ArgumentOutOfRangeException.ThrowIfZero(streamId);

    private static void WriteHeader(IBufferWriter<byte> output, int payloadLength, Http2FrameType type, byte flags, uint streamId)
    {
        var span = output.GetSpan(Http2Constants.FrameHeaderSize);
        WriteFrameHeader(span, payloadLength, type, flags, streamId);
        output.Advance(Http2Constants.FrameHeaderSize);
    }

    /// <summary>Copies in pieces the writer already has: asking for the whole payload at once would make a pipe allocate an oversized segment.</summary>
    private static void WritePayload(IBufferWriter<byte> output, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var span = output.GetSpan();
            var size = Math.Min(span.Length, data.Length);
            data[..size].CopyTo(span);
            output.Advance(size);
            data = data[size..];
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http2.Frames;

/// <summary>
/// Parses HTTP/2 frames (RFC 9113 §4.1, §6) out of a connection's read buffer and enforces every framing rule
/// that can be checked on one frame. Stateless: the per-connection state is the <see cref="Http2Frame"/> it fills,
/// the SETTINGS_MAX_FRAME_SIZE the caller passes, and the <see cref="Http2HeaderBlockAssembler"/> the caller
/// runs every frame through (CONTINUATION sequencing).
/// <code>
/// +-----------------------------------------------+
/// |                 Length (24)                   |
/// +---------------+---------------+---------------+
/// |   Type (8)    |   Flags (8)   |
/// +-+-------------+---------------+-------------------------------+
/// |R|                 Stream Identifier (31)                      |
/// +=+=============================================================+
/// |                   Frame Payload (0...)                      ...
/// +---------------------------------------------------------------+
/// </code>
/// </summary>
public static class Http2FrameReader
{
    /// <summary>
    /// Reads the client connection preface. False: fewer than 24 bytes, nothing consumed. True: <paramref name="buffer"/>
    /// now starts after it. Throws <see cref="Http2ConnectionException"/> (PROTOCOL_ERROR) on any other bytes,
    /// as soon as a mismatching byte is visible.
    /// </summary>
    public static bool TryReadClientPreface(ref ReadOnlySequence<byte> buffer)
    {
        var preface = Http2Constants.ClientPreface;
        Span<byte> scratch = stackalloc byte[24];
        var available = (int)Math.Min(buffer.Length, preface.Length);
        buffer.Slice(0, available).CopyTo(scratch);
        if (!scratch[..available].SequenceEqual(preface[..available]))
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, "invalid_preface");
        }

        if (available < preface.Length)
        {
            return false;
        }

        buffer = buffer.Slice(preface.Length);
        return true;
    }

    /// <summary>
    /// Reads one frame from the start of <paramref name="buffer"/>.
    /// <para>False: the frame is incomplete; nothing consumed, <paramref name="buffer"/> and <paramref name="frame"/> untouched.</para>
    /// <para>True: <paramref name="frame"/> describes the frame, <paramref name="payload"/> is its variable part as a slice
    /// of <paramref name="buffer"/> (DATA: the data, padding removed; HEADERS/PUSH_PROMISE/CONTINUATION: the field
    /// block fragment; GOAWAY: the debug data; SETTINGS: the entries, see <see cref="Http2SettingsEnumerator"/>; unknown
    /// types: the whole payload; PRIORITY/RST_STREAM/PING/WINDOW_UPDATE: the raw payload, already decoded into the frame),
    /// and <paramref name="buffer"/> starts after the frame. The slice is valid until the caller advances its pipe past it.</para>
    /// <para>Throws <see cref="Http2ConnectionException"/> for connection errors (buffer unchanged; the connection ends) and
    /// <see cref="Http2StreamException"/> for stream errors, in which case the frame has been consumed: <paramref name="buffer"/>
    /// starts after it and <paramref name="frame"/> describes its header.</para>
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, Http2Frame frame, uint maxFrameSize, out ReadOnlySequence<byte> payload)
    {
        payload = default;
        if (buffer.Length < Http2Constants.FrameHeaderSize)
        {
            return false;
        }

        Span<byte> scratch = stackalloc byte[Http2Constants.FrameHeaderSize];
        // Fast path: the header lies in the first segment, the common case with pipe buffers.
        var header = buffer.FirstSpan.Length >= Http2Constants.FrameHeaderSize ? buffer.FirstSpan : CopyPrefix(buffer, scratch);
        var length = (header[0] << 16) | (header[1] << 8) | header[2];
        if ((uint)length > maxFrameSize)
        {
            // Refused on the header alone: waiting for an oversized payload would let the peer make us buffer it.
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "frame_too_large");
        }

        if (buffer.Length - Http2Constants.FrameHeaderSize < length)
        {
            return false;
        }

        var type = (Http2FrameType)header[3];
        var flags = header[4];
        var streamId = BinaryPrimitives.ReadUInt32BigEndian(header[5..]) & Http2Constants.StreamIdMask;
        frame.Set(type, flags, streamId, length);
        var raw = buffer.Slice(Http2Constants.FrameHeaderSize, length);
        var rest = buffer.Slice(raw.End);
        payload = raw;
        switch (type)
        {
            case Http2FrameType.Data:
                RequireStream(streamId, "data_on_stream_0");
                if ((flags & Http2Flags.Padded) != 0)
                {
                    payload = RemovePadding(frame, raw, fixedLength: 0, scratch);
                }

                break;
            case Http2FrameType.Headers:
                RequireStream(streamId, "headers_on_stream_0");
                payload = ReadHeaders(frame, raw, scratch);
                break;
            case Http2FrameType.Priority:
                RequireStream(streamId, "priority_on_stream_0");
                ReadPriority(ref buffer, rest, frame, raw, scratch);
                break;
            case Http2FrameType.RstStream:
                RequireStream(streamId, "rst_stream_on_stream_0");
                ReadRstStream(frame, raw, scratch);
                break;
            case Http2FrameType.Settings:
                RequireConnection(streamId, "settings_on_stream");
                ValidateSettings(flags, raw);
                break;
            case Http2FrameType.PushPromise:
                RequireStream(streamId, "push_promise_on_stream_0");
                payload = ReadPushPromise(frame, raw, scratch);
                break;
            case Http2FrameType.Ping:
                RequireConnection(streamId, "ping_on_stream");
                ReadPing(frame, raw, scratch);
                break;
            case Http2FrameType.GoAway:
                RequireConnection(streamId, "goaway_on_stream");
                payload = ReadGoAway(frame, raw, scratch);
                break;
            case Http2FrameType.WindowUpdate:
                ReadWindowUpdate(ref buffer, rest, frame, raw, scratch);
                break;
            case Http2FrameType.Continuation:
                // Payload: Field Block Fragment (*); sequencing is Http2HeaderBlockAssembler's.
                RequireStream(streamId, "continuation_on_stream_0");
                break;
            default:
                // Unknown type: returned whole so the connection can ignore it (RFC 9113 §4.1, §5.5).
                break;
        }

        buffer = rest;
        return true;
    }

    /// <summary>
    /// <code>
    /// +---------------------------------------------------------------+
    /// |                        Error Code (32)                        |
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static void ReadRstStream(Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        if (raw.Length != 4)
        {
            // RFC 9113 §6.4 makes this a connection error (unlike PRIORITY's stream error).
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "rst_stream_length");
        }

        frame.SetErrorCode((Http2ErrorCode)BinaryPrimitives.ReadUInt32BigEndian(Prefix(raw, 4, scratch)));
    }

    /// <summary>
    /// <code>
    /// +---------------------------------------------------------------+
    /// |                      Opaque Data (64)                         |
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static void ReadPing(Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        if (raw.Length != 8)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "ping_length");
        }

        frame.SetPingData(BinaryPrimitives.ReadUInt64BigEndian(Prefix(raw, 8, scratch)));
    }

    /// <summary>
    /// <code>
    /// +-+-------------------------------------------------------------+
    /// |R|                  Last-Stream-ID (31)                        |
    /// +-+-------------------------------------------------------------+
    /// |                      Error Code (32)                          |
    /// +---------------------------------------------------------------+
    /// |                  Additional Debug Data (*)                    |
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static ReadOnlySequence<byte> ReadGoAway(Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        if (raw.Length < 8)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "goaway_length");
        }

        var fixedPart = Prefix(raw, 8, scratch);
        frame.SetLastStreamId(BinaryPrimitives.ReadUInt32BigEndian(fixedPart) & Http2Constants.StreamIdMask);
        frame.SetErrorCode((Http2ErrorCode)BinaryPrimitives.ReadUInt32BigEndian(fixedPart[4..]));
        return raw.Slice(8);
    }

    private static void RequireStream(uint streamId, string reason)
    {
        if (streamId == 0)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, reason);
        }
    }

    private static void RequireConnection(uint streamId, string reason)
    {
        if (streamId != 0)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, reason);
        }
    }

    /// <summary>
    /// Strips Pad Length (first byte), <paramref name="fixedLength"/> bytes after it, and the padding. DATA:
    /// <code>
    /// +---------------+
    /// |Pad Length? (8)|
    /// +---------------+-----------------------------------------------+
    /// |                            Data (*)                         ...
    /// +---------------------------------------------------------------+
    /// |                           Padding (*)                       ...
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static ReadOnlySequence<byte> RemovePadding(Http2Frame frame, in ReadOnlySequence<byte> raw, int fixedLength, Span<byte> scratch)
    {
        if (raw.Length < 1 + fixedLength)
        {
            // Too short for its mandatory fields (RFC 9113 §4.2); DATA and field blocks alike end the connection.
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "frame_too_short");
        }

        var padLength = Prefix(raw, 1, scratch)[0];
        var content = raw.Length - 1 - fixedLength;
        if (padLength > content)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, "padding_too_long");
        }

        frame.SetPadding(padLength);
        return raw.Slice(1 + fixedLength, content - padLength);
    }

    /// <summary>
    /// <code>
    /// +---------------+
    /// |Pad Length? (8)|
    /// +-+-------------+-----------------------------------------------+
    /// |E|                 Stream Dependency? (31)                     |
    /// +-+-------------+-----------------------------------------------+
    /// |  Weight? (8)  |
    /// +-+-------------+-----------------------------------------------+
    /// |                   Field Block Fragment (*)                  ...
    /// +---------------------------------------------------------------+
    /// |                           Padding (*)                       ...
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static ReadOnlySequence<byte> ReadHeaders(Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        var padded = (frame.Flags & Http2Flags.Padded) != 0;
        var priority = (frame.Flags & Http2Flags.Priority) != 0;
        if (!padded && !priority)
        {
            return raw;
        }

        var prefixLength = (padded ? 1 : 0) + (priority ? 5 : 0);
        if (raw.Length < prefixLength)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "frame_too_short");
        }

        var content = raw;
        if (padded)
        {
            content = RemovePadding(frame, raw, priority ? 5 : 0, scratch);
        }

        if (priority)
        {
            var fields = Prefix(raw.Slice(padded ? 1 : 0), 5, scratch);
            var dependency = BinaryPrimitives.ReadUInt32BigEndian(fields);
            frame.SetPriority(dependency & Http2Constants.StreamIdMask, (dependency & 0x80000000) != 0, fields[4]);
            if (frame.StreamDependency == frame.StreamId)
            {
                // A stream error by RFC 9113 §5.3.1, but the field block could then not be decoded and the HPACK
                // context would drift, so it ends the connection (RFC 9113 §5.4 allows the escalation).
                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "stream_depends_on_itself");
            }

            if (!padded)
            {
                content = raw.Slice(5);
            }
        }

        return content;
    }

    /// <summary>
    /// <code>
    /// +-+-------------------------------------------------------------+
    /// |E|                  Stream Dependency (31)                     |
    /// +-+-------------+-----------------------------------------------+
    /// |   Weight (8)  |
    /// +-+-------------+
    /// </code>
    /// </summary>
    private static void ReadPriority(ref ReadOnlySequence<byte> buffer, in ReadOnlySequence<byte> rest, Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        if (raw.Length != 5)
        {
            buffer = rest;
            Http2Throw.Stream(frame.StreamId, Http2ErrorCode.FrameSizeError, "priority_length");
        }

        var fields = Prefix(raw, 5, scratch);
        var dependency = BinaryPrimitives.ReadUInt32BigEndian(fields);
        frame.SetPriority(dependency & Http2Constants.StreamIdMask, (dependency & 0x80000000) != 0, fields[4]);
        if (frame.StreamDependency == frame.StreamId)
        {
            buffer = rest;
            Http2Throw.Stream(frame.StreamId, Http2ErrorCode.ProtocolError, "stream_depends_on_itself");
        }
    }

    /// <summary>
    /// <code>
    /// +---------------+
    /// |Pad Length? (8)|
    /// +-+-------------+-----------------------------------------------+
    /// |R|                  Promised Stream ID (31)                    |
    /// +-+-----------------------------+-------------------------------+
    /// |                   Field Block Fragment (*)                  ...
    /// +---------------------------------------------------------------+
    /// |                           Padding (*)                       ...
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static ReadOnlySequence<byte> ReadPushPromise(Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        var padded = (frame.Flags & Http2Flags.Padded) != 0;
        var prefixLength = padded ? 5 : 4;
        if (raw.Length < prefixLength)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "frame_too_short");
        }

        var content = padded ? RemovePadding(frame, raw, 4, scratch) : raw.Slice(4);
        var promised = BinaryPrimitives.ReadUInt32BigEndian(Prefix(raw.Slice(padded ? 1 : 0), 4, scratch));
        frame.SetPromisedStreamId(promised & Http2Constants.StreamIdMask);
        return content;
    }

    /// <summary>
    /// <code>
    /// +-+-------------------------------------------------------------+
    /// |R|              Window Size Increment (31)                     |
    /// +-+-------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static void ReadWindowUpdate(ref ReadOnlySequence<byte> buffer, in ReadOnlySequence<byte> rest, Http2Frame frame, in ReadOnlySequence<byte> raw, Span<byte> scratch)
    {
        if (raw.Length != 4)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "window_update_length");
        }

        var increment = BinaryPrimitives.ReadUInt32BigEndian(Prefix(raw, 4, scratch)) & Http2Constants.StreamIdMask;
        frame.SetWindowIncrement(increment);
        if (increment == 0)
        {
            if (frame.StreamId == 0)
            {
                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "window_update_zero");
            }

            buffer = rest;
            Http2Throw.Stream(frame.StreamId, Http2ErrorCode.ProtocolError, "window_update_zero");
        }
    }

    /// <summary>
    /// Values with defined limits are checked here (RFC 9113 §6.5.2); unknown identifiers pass untouched.
    /// Entries of 6 bytes:
    /// <code>
    /// +-------------------------------+
    /// |       Identifier (16)         |
    /// +-------------------------------+-------------------------------+
    /// |                        Value (32)                             |
    /// +---------------------------------------------------------------+
    /// </code>
    /// </summary>
    private static void ValidateSettings(byte flags, in ReadOnlySequence<byte> raw)
    {
        if ((flags & Http2Flags.Ack) != 0)
        {
            if (raw.Length != 0)
            {
                Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "settings_ack_with_payload");
            }

            return;
        }

        if (raw.Length % Http2Constants.SettingSize != 0)
        {
            Http2Throw.Connection(Http2ErrorCode.FrameSizeError, "settings_length");
        }

        foreach (var setting in new Http2SettingsEnumerator(raw))
        {
            switch (setting.Parameter)
            {
                case Http2SettingsParameter.EnablePush:
                    if (setting.Value > 1)
                    {
                        Http2Throw.Connection(Http2ErrorCode.ProtocolError, "settings_enable_push");
                    }

                    break;
                case Http2SettingsParameter.InitialWindowSize:
                    if (setting.Value > Http2Constants.MaxWindowSize)
                    {
                        Http2Throw.Connection(Http2ErrorCode.FlowControlError, "settings_initial_window_size");
                    }

                    break;
                case Http2SettingsParameter.MaxFrameSize:
                    if (setting.Value < Http2Constants.MinMaxFrameSize || setting.Value > Http2Constants.MaxMaxFrameSize)
                    {
                        Http2Throw.Connection(Http2ErrorCode.ProtocolError, "settings_max_frame_size");
                    }

                    break;
                case Http2SettingsParameter.EnableConnectProtocol:
                case Http2SettingsParameter.NoRfc7540Priorities:
                    if (setting.Value > 1)
                    {
                        Http2Throw.Connection(Http2ErrorCode.ProtocolError, "settings_boolean");
                    }

                    break;
            }
        }
    }

    /// <summary>The first <paramref name="count"/> bytes of <paramref name="raw"/> (which has at least that many), copied only when they straddle segments.</summary>
    // Inlined: called once or twice per frame for a handful of bytes; the call would cost more than the body.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlySpan<byte> Prefix(in ReadOnlySequence<byte> raw, int count, Span<byte> scratch)
    {
        var first = raw.FirstSpan;
        // Fast path: fixed fields almost always lie in the first segment.
        return first.Length >= count ? first[..count] : CopyPrefix(raw, scratch[..count]);
    }

    // Out of line: the straddling case is rare and keeping it out keeps the inlined fast path small.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ReadOnlySpan<byte> CopyPrefix(ReadOnlySequence<byte> source, Span<byte> scratch)
    {
        source.Slice(0, scratch.Length).CopyTo(scratch);
        return scratch;
    }
}

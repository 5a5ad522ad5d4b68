namespace Proxy.Http.Http2.Frames;

/// <summary>
/// The frame the reader decoded last: header fields plus the fixed fields of its type. One instance per
/// connection, overwritten by every <see cref="Http2FrameReader.TryReadFrame"/>; fields that do not belong
/// to the current type are zero. The variable part (data, field block fragment, debug data, settings
/// entries) is not held here: the reader hands it out as a slice of the read buffer.
/// </summary>
public sealed class Http2Frame
{
    /// <summary>Frame type; a value outside <see cref="Http2FrameType"/> is an unknown (extension) type.</summary>
    public Http2FrameType Type { get; private set; }

    /// <summary>Raw flags byte, unknown bits included (they are ignored, not cleared).</summary>
    public byte Flags { get; private set; }

    /// <summary>Stream identifier, reserved bit removed.</summary>
    public uint StreamId { get; private set; }

    /// <summary>Payload length from the frame header, padding and fixed fields included (what DATA costs in flow control).</summary>
    public int PayloadLength { get; private set; }

    /// <summary>The type is one of RFC 9113's; false means the connection should ignore the frame (its CONTINUATION rule still applies).</summary>
    public bool IsKnownType => (byte)Type <= (byte)Http2FrameType.Continuation;

    /// <summary>DATA, HEADERS: END_STREAM.</summary>
    public bool EndStream => (Type == Http2FrameType.Data || Type == Http2FrameType.Headers) && (Flags & Http2Flags.EndStream) != 0;

    /// <summary>HEADERS, PUSH_PROMISE, CONTINUATION: END_HEADERS.</summary>
    public bool EndHeaders => (Type is Http2FrameType.Headers or Http2FrameType.PushPromise or Http2FrameType.Continuation) && (Flags & Http2Flags.EndHeaders) != 0;

    /// <summary>SETTINGS, PING: ACK.</summary>
    public bool IsAck => (Type == Http2FrameType.Settings || Type == Http2FrameType.Ping) && (Flags & Http2Flags.Ack) != 0;

    /// <summary>DATA, HEADERS, PUSH_PROMISE: the Pad Length value (padding bytes removed from the payload slice).</summary>
    public byte PadLength { get; private set; }

    /// <summary>HEADERS with the PRIORITY flag, or PRIORITY: priority fields are present.</summary>
    public bool HasPriority { get; private set; }

    /// <summary>HEADERS (PRIORITY flag), PRIORITY: the stream this one depends on.</summary>
    public uint StreamDependency { get; private set; }

    /// <summary>HEADERS (PRIORITY flag), PRIORITY: the exclusive bit.</summary>
    public bool Exclusive { get; private set; }

    /// <summary>HEADERS (PRIORITY flag), PRIORITY: weight as sent (0..255; the weight is this plus one).</summary>
    public byte Weight { get; private set; }

    /// <summary>PUSH_PROMISE: the promised stream, reserved bit removed.</summary>
    public uint PromisedStreamId { get; private set; }

    /// <summary>RST_STREAM, GOAWAY: the error code (may be a value outside the enum).</summary>
    public Http2ErrorCode ErrorCode { get; private set; }

    /// <summary>GOAWAY: last stream the sender may have processed, reserved bit removed.</summary>
    public uint LastStreamId { get; private set; }

    /// <summary>WINDOW_UPDATE: the increment (1..2^31-1).</summary>
    public uint WindowIncrement { get; private set; }

    /// <summary>PING: the 8 opaque bytes, read big-endian (echo them with <see cref="Http2FrameWriter.WritePing"/>).</summary>
    public ulong PingData { get; private set; }

    /// <summary>Overwrites the header fields and clears the type-specific ones.</summary>
    internal void Set(Http2FrameType type, byte flags, uint streamId, int payloadLength)
    {
        Type = type;
        Flags = flags;
        StreamId = streamId;
        PayloadLength = payloadLength;
        PadLength = 0;
        HasPriority = false;
        StreamDependency = 0;
        Exclusive = false;
        Weight = 0;
        PromisedStreamId = 0;
        ErrorCode = Http2ErrorCode.NoError;
        LastStreamId = 0;
        WindowIncrement = 0;
        PingData = 0;
    }

    internal void SetPadding(byte padLength) => PadLength = padLength;

    internal void SetPriority(uint dependency, bool exclusive, byte weight)
    {
        HasPriority = true;
        StreamDependency = dependency;
        Exclusive = exclusive;
        Weight = weight;
    }

    internal void SetPromisedStreamId(uint streamId) => PromisedStreamId = streamId;

    internal void SetErrorCode(Http2ErrorCode code) => ErrorCode = code;

    internal void SetLastStreamId(uint streamId) => LastStreamId = streamId;

    internal void SetWindowIncrement(uint increment) => WindowIncrement = increment;

    internal void SetPingData(ulong data) => PingData = data;
}

namespace Proxy.Http.Http2;

/// <summary>Frame types of RFC 9113 §6. Any other value is an unknown (extension) frame type and is ignored.</summary>
public enum Http2FrameType : byte
{
    /// <summary>DATA (0x0).</summary>
    Data = 0x0,
    /// <summary>HEADERS (0x1).</summary>
    Headers = 0x1,
    /// <summary>PRIORITY (0x2), deprecated but still parsed.</summary>
    Priority = 0x2,
    /// <summary>RST_STREAM (0x3).</summary>
    RstStream = 0x3,
    /// <summary>SETTINGS (0x4).</summary>
    Settings = 0x4,
    /// <summary>PUSH_PROMISE (0x5).</summary>
    PushPromise = 0x5,
    /// <summary>PING (0x6).</summary>
    Ping = 0x6,
    /// <summary>GOAWAY (0x7).</summary>
    GoAway = 0x7,
    /// <summary>WINDOW_UPDATE (0x8).</summary>
    WindowUpdate = 0x8,
    /// <summary>CONTINUATION (0x9).</summary>
    Continuation = 0x9,
}

/// <summary>Frame flag bits (RFC 9113 §6). The same bit means different things for different types.</summary>
public static class Http2Flags
{
    /// <summary>No flags.</summary>
    public const byte None = 0x0;
    /// <summary>DATA, HEADERS: last frame the sender sends on the stream.</summary>
    public const byte EndStream = 0x1;
    /// <summary>SETTINGS, PING: acknowledgement.</summary>
    public const byte Ack = 0x1;
    /// <summary>HEADERS, PUSH_PROMISE, CONTINUATION: the field block ends with this frame.</summary>
    public const byte EndHeaders = 0x4;
    /// <summary>DATA, HEADERS, PUSH_PROMISE: a Pad Length byte and padding are present.</summary>
    public const byte Padded = 0x8;
    /// <summary>HEADERS: Exclusive, Stream Dependency and Weight are present.</summary>
    public const byte Priority = 0x20;
}

/// <summary>SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441, RFC 9218). Unknown identifiers are ignored.</summary>
public enum Http2SettingsParameter : ushort
{
    /// <summary>SETTINGS_HEADER_TABLE_SIZE (0x1): HPACK dynamic table size the sender's decoder allows.</summary>
    HeaderTableSize = 0x1,
    /// <summary>SETTINGS_ENABLE_PUSH (0x2): 0 or 1.</summary>
    EnablePush = 0x2,
    /// <summary>SETTINGS_MAX_CONCURRENT_STREAMS (0x3).</summary>
    MaxConcurrentStreams = 0x3,
    /// <summary>SETTINGS_INITIAL_WINDOW_SIZE (0x4): at most 2^31-1.</summary>
    InitialWindowSize = 0x4,
    /// <summary>SETTINGS_MAX_FRAME_SIZE (0x5): 16384..16777215.</summary>
    MaxFrameSize = 0x5,
    /// <summary>SETTINGS_MAX_HEADER_LIST_SIZE (0x6): advisory.</summary>
    MaxHeaderListSize = 0x6,
    /// <summary>SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8, RFC 8441): 0 or 1.</summary>
    EnableConnectProtocol = 0x8,
    /// <summary>SETTINGS_NO_RFC7540_PRIORITIES (0x9, RFC 9218): 0 or 1.</summary>
    NoRfc7540Priorities = 0x9,
}

/// <summary>Protocol constants of RFC 9113.</summary>
public static class Http2Constants
{
    /// <summary>Size of the frame header: length (24), type (8), flags (8), R + stream id (32).</summary>
    public const int FrameHeaderSize = 9;

    /// <summary>Initial SETTINGS_MAX_FRAME_SIZE, and the smallest value a peer may set.</summary>
    public const uint DefaultMaxFrameSize = 16384;

    /// <summary>Smallest legal SETTINGS_MAX_FRAME_SIZE.</summary>
    public const uint MinMaxFrameSize = 16384;

    /// <summary>Largest legal SETTINGS_MAX_FRAME_SIZE (2^24-1).</summary>
    public const uint MaxMaxFrameSize = 16777215;

    /// <summary>Initial flow-control window of the connection and of every stream.</summary>
    public const int DefaultInitialWindowSize = 65535;

    /// <summary>Largest flow-control window (2^31-1).</summary>
    public const int MaxWindowSize = int.MaxValue;

    /// <summary>Initial SETTINGS_HEADER_TABLE_SIZE.</summary>
    public const uint DefaultHeaderTableSize = 4096;

    /// <summary>Mask of the 31-bit stream identifier (the reserved bit is ignored on receipt, sent as 0).</summary>
    public const uint StreamIdMask = 0x7FFFFFFF;

    /// <summary>Size of one SETTINGS entry: identifier (16), value (32).</summary>
    public const int SettingSize = 6;

    /// <summary>The client connection preface, <c>PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n</c> (24 bytes).</summary>
    public static ReadOnlySpan<byte> ClientPreface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;
}

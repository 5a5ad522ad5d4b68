namespace Proxy.Http.Http2;

/// <summary>Error codes of RFC 9113 §7, carried by RST_STREAM and GOAWAY. Values outside the list are legal on the wire.</summary>
public enum Http2ErrorCode : uint
{
    /// <summary>Graceful shutdown, not an error (0x0).</summary>
    NoError = 0x0,
    /// <summary>Unspecific protocol error (0x1).</summary>
    ProtocolError = 0x1,
    /// <summary>Unexpected internal error (0x2).</summary>
    InternalError = 0x2,
    /// <summary>Peer violated flow control (0x3).</summary>
    FlowControlError = 0x3,
    /// <summary>SETTINGS sent but not acknowledged in time (0x4).</summary>
    SettingsTimeout = 0x4,
    /// <summary>Frame received after the stream was half-closed (0x5).</summary>
    StreamClosed = 0x5,
    /// <summary>Frame with an invalid size (0x6).</summary>
    FrameSizeError = 0x6,
    /// <summary>Stream refused before any application processing (0x7); safe to retry.</summary>
    RefusedStream = 0x7,
    /// <summary>Stream no longer needed (0x8).</summary>
    Cancel = 0x8,
    /// <summary>Field section compression context cannot be maintained (0x9).</summary>
    CompressionError = 0x9,
    /// <summary>The connection of a CONNECT request was reset or closed (0xa).</summary>
    ConnectError = 0xa,
    /// <summary>Peer behaves in a way that may generate excessive load (0xb).</summary>
    EnhanceYourCalm = 0xb,
    /// <summary>Transport does not meet minimum security requirements (0xc).</summary>
    InadequateSecurity = 0xc,
    /// <summary>Endpoint requires HTTP/1.1 instead of HTTP/2 (0xd).</summary>
    Http11Required = 0xd,
}

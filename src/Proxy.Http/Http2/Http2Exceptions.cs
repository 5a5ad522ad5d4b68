using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http2;

/// <summary>
/// A connection error (RFC 9113 §5.4.1): the connection must send GOAWAY with <see cref="ErrorCode"/> and close.
/// Thrown by the codec when a frame breaks a rule whose breach leaves the connection state untrustworthy.
/// </summary>
public sealed class Http2ConnectionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public Http2ConnectionException(Http2ErrorCode errorCode, string reason)
        : base(reason)
    {
        ErrorCode = errorCode;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2ConnectionException()
        : this(Http2ErrorCode.ProtocolError, "protocol_error")
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2ConnectionException(string message)
        : this(Http2ErrorCode.ProtocolError, message)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2ConnectionException(string message, Exception innerException)
        : base(message, innerException)
    {
        ErrorCode = Http2ErrorCode.ProtocolError;
    }

    /// <summary>The code for GOAWAY.</summary>
    public Http2ErrorCode ErrorCode { get; }

    /// <summary>Short machine-readable reason (snake_case), e.g. for GOAWAY debug data and logs.</summary>
    public string Reason => Message;
}

/// <summary>
/// A stream error (RFC 9113 §5.4.2): the connection must send RST_STREAM with <see cref="ErrorCode"/> on
/// <see cref="StreamId"/> and may go on. When the frame reader throws it, the offending frame has already
/// been consumed (the buffer is advanced past it), so the connection continues with the next frame.
/// </summary>
public sealed class Http2StreamException : Exception
{
    /// <summary>Creates the exception.</summary>
    public Http2StreamException(uint streamId, Http2ErrorCode errorCode, string reason)
        : base(reason)
    {
        StreamId = streamId;
        ErrorCode = errorCode;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamException()
        : this(0, Http2ErrorCode.ProtocolError, "protocol_error")
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamException(string message)
        : this(0, Http2ErrorCode.ProtocolError, message)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamException(string message, Exception innerException)
        : base(message, innerException)
    {
        ErrorCode = Http2ErrorCode.ProtocolError;
    }

    /// <summary>The stream to reset.</summary>
    public uint StreamId { get; }

    /// <summary>The code for RST_STREAM.</summary>
    public Http2ErrorCode ErrorCode { get; }

    /// <summary>Short machine-readable reason (snake_case).</summary>
    public string Reason => Message;
}

/// <summary>Throw helpers kept out of line so the codec's hot paths stay small.</summary>
internal static class Http2Throw
{
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Connection(Http2ErrorCode code, string reason) => throw new Http2ConnectionException(code, reason);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Stream(uint streamId, Http2ErrorCode code, string reason) => throw new Http2StreamException(streamId, code, reason);
}

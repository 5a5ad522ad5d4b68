namespace Proxy.Http.Http2.Client;

/// <summary>How a client stream ended.</summary>
public enum Http2StreamEndKind
{
    /// <summary>The response ended with END_STREAM (trailers, if any, are in <see cref="Http2ClientStream.Trailers"/>).</summary>
    Completed,

    /// <summary>The server sent RST_STREAM (<see cref="Http2StreamEnd.ErrorCode"/> has its code).</summary>
    ResetByPeer,

    /// <summary>We reset the stream: <see cref="Http2ClientStream.Reset"/>, a malformed response, or a send stall.</summary>
    ResetLocally,

    /// <summary>
    /// The server did not process the stream: GOAWAY with a last-stream-id below it, RST_STREAM REFUSED_STREAM, or
    /// the connection was going away before the stream's HEADERS left. Safe to retry on another connection.
    /// </summary>
    Refused,

    /// <summary>The connection failed or closed before the response ended (the server may have processed the request).</summary>
    ConnectionLost,
}

/// <summary>The outcome of a client stream: kind, the HTTP/2 error code involved (NO_ERROR for a completed stream) and a short reason.</summary>
public readonly record struct Http2StreamEnd(Http2StreamEndKind Kind, Http2ErrorCode ErrorCode, string? Reason = null)
{
    /// <summary>True when the request was certainly not processed by the server and may be sent again elsewhere (RFC 9113 §8.7).</summary>
    public bool IsRetryable => Kind == Http2StreamEndKind.Refused;

    /// <summary>True for a response that ended with END_STREAM.</summary>
    public bool IsCompleted => Kind == Http2StreamEndKind.Completed;
}

/// <summary>Thrown by a stream's read methods (response head, body) when the stream ended without a complete response.</summary>
public sealed class Http2StreamAbortedException : Exception
{
    /// <summary>Creates the exception for <paramref name="end"/>.</summary>
    public Http2StreamAbortedException(Http2StreamEnd end)
        : base($"HTTP/2 stream ended: {end.Kind} ({end.ErrorCode}){(end.Reason is null ? "" : ": " + end.Reason)}")
    {
        End = end;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamAbortedException()
        : this(new Http2StreamEnd(Http2StreamEndKind.ConnectionLost, Http2ErrorCode.InternalError))
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamAbortedException(string message)
        : base(message)
    {
        End = new Http2StreamEnd(Http2StreamEndKind.ConnectionLost, Http2ErrorCode.InternalError, message);
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2StreamAbortedException(string message, Exception innerException)
        : base(message, innerException)
    {
        End = new Http2StreamEnd(Http2StreamEndKind.ConnectionLost, Http2ErrorCode.InternalError, message);
    }

    /// <summary>How the stream ended.</summary>
    public Http2StreamEnd End { get; }
}

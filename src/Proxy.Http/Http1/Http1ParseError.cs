using System.Diagnostics.CodeAnalysis;

namespace Proxy.Http.Http1;

/// <summary>
/// Why an HTTP/1.1 message was refused. Each value maps to the status the proxy answers the client with
/// (request side) and a short machine-readable reason for the response header and access log.
/// Errors found while parsing an upstream response are answered with 502 by the forwarder; the status
/// carried here is then informational only.
/// </summary>
public enum Http1ParseError
{
    /// <summary>Request line longer than <see cref="Http1ParserOptions.MaxStartLineBytes"/> (414).</summary>
    RequestLineTooLong,
    /// <summary>Header section larger than <see cref="Http1ParserOptions.MaxHeaderBytes"/> (431).</summary>
    HeaderTooLarge,
    /// <summary>More header fields than <see cref="Http1ParserOptions.MaxHeaderCount"/> (431).</summary>
    TooManyHeaders,
    /// <summary>Start line not of the form method SP target SP version (400).</summary>
    InvalidRequestLine,
    /// <summary>Method is not a token (400).</summary>
    InvalidMethod,
    /// <summary>Method is a token but not a registered method and unregistered methods are refused (501).</summary>
    UnknownMethod,
    /// <summary>Request target has invalid bytes or a form not allowed for the method (400).</summary>
    InvalidTarget,
    /// <summary>Version is not HTTP/DIGIT.DIGIT (400).</summary>
    InvalidVersion,
    /// <summary>Version is well-formed but neither 1.0 nor 1.1 (505).</summary>
    UnsupportedVersion,
    /// <summary>Response status line malformed (status code not three digits, bad reason bytes).</summary>
    InvalidStatusLine,
    /// <summary>LF without the CR that must precede it (400).</summary>
    BareLf,
    /// <summary>CR not followed by LF (400).</summary>
    BareCr,
    /// <summary>Header line starting with whitespace: obsolete line folding, or whitespace after the start line (400).</summary>
    ObsFold,
    /// <summary>Whitespace between a field name and the colon (400).</summary>
    SpaceBeforeColon,
    /// <summary>Field name empty or containing a non-token byte (400).</summary>
    InvalidToken,
    /// <summary>Header line without a colon (400).</summary>
    MissingColon,
    /// <summary>Control byte inside a field value (400).</summary>
    InvalidFieldValue,
    /// <summary>Both Content-Length and Transfer-Encoding (400).</summary>
    ContentLengthAndTransferEncoding,
    /// <summary>More than one Content-Length field, equal or not (400).</summary>
    DuplicateContentLength,
    /// <summary>Content-Length empty or not all digits (400).</summary>
    InvalidContentLength,
    /// <summary>Content-Length larger than a signed 64-bit integer (400).</summary>
    ContentLengthOverflow,
    /// <summary>Transfer-Encoding empty, or chunked applied twice (400).</summary>
    InvalidTransferEncoding,
    /// <summary>Request Transfer-Encoding whose final coding is not chunked (400, RFC 9112 §6.3).</summary>
    ChunkedNotFinal,
    /// <summary>A transfer coding other than chunked before the final chunked (501).</summary>
    UnsupportedTransferCoding,
    /// <summary>Transfer-Encoding in an HTTP/1.0 message (400, RFC 9112 §6.1 says the framing is faulty).</summary>
    TransferEncodingInHttp10,
    /// <summary>HTTP/1.1 request without Host (400, RFC 9112 §3.2).</summary>
    MissingHost,
    /// <summary>More than one Host field (400).</summary>
    DuplicateHost,
    /// <summary>Chunk size not 1*HEXDIG, or whitespace after it (400).</summary>
    InvalidChunkSize,
    /// <summary>Chunk size larger than a signed 64-bit integer (400).</summary>
    ChunkSizeOverflow,
    /// <summary>Malformed chunk extension (400).</summary>
    InvalidChunkExtension,
    /// <summary>Chunk size line longer than <see cref="Http1ParserOptions.MaxChunkLineBytes"/> (400).</summary>
    ChunkLineTooLong,
    /// <summary>Chunk data not followed by CRLF (400).</summary>
    InvalidChunkTerminator,
    /// <summary>Trailer section larger than <see cref="Http1ParserOptions.MaxTrailerBytes"/> (431).</summary>
    TrailerTooLarge,
}

/// <summary>Status code and reason text of each <see cref="Http1ParseError"/>.</summary>
public static class Http1ParseErrors
{
    /// <summary>The HTTP status the proxy answers a client request with.</summary>
    public static int StatusCode(Http1ParseError error) => error switch
    {
        Http1ParseError.RequestLineTooLong => 414,
        Http1ParseError.HeaderTooLarge or Http1ParseError.TooManyHeaders or Http1ParseError.TrailerTooLarge => 431,
        Http1ParseError.UnknownMethod or Http1ParseError.UnsupportedTransferCoding => 501,
        Http1ParseError.UnsupportedVersion => 505,
        _ => 400,
    };

    /// <summary>Short stable machine-readable reason (snake_case), never localized.</summary>
    public static string Reason(Http1ParseError error) => error switch
    {
        Http1ParseError.RequestLineTooLong => "request_line_too_long",
        Http1ParseError.HeaderTooLarge => "header_too_large",
        Http1ParseError.TooManyHeaders => "too_many_headers",
        Http1ParseError.InvalidRequestLine => "invalid_request_line",
        Http1ParseError.InvalidMethod => "invalid_method",
        Http1ParseError.UnknownMethod => "unknown_method",
        Http1ParseError.InvalidTarget => "invalid_target",
        Http1ParseError.InvalidVersion => "invalid_version",
        Http1ParseError.UnsupportedVersion => "unsupported_version",
        Http1ParseError.InvalidStatusLine => "invalid_status_line",
        Http1ParseError.BareLf => "bare_lf",
        Http1ParseError.BareCr => "bare_cr",
        Http1ParseError.ObsFold => "obs_fold",
        Http1ParseError.SpaceBeforeColon => "space_before_colon",
        Http1ParseError.InvalidToken => "invalid_token",
        Http1ParseError.MissingColon => "missing_colon",
        Http1ParseError.InvalidFieldValue => "invalid_field_value",
        Http1ParseError.ContentLengthAndTransferEncoding => "cl_and_te",
        Http1ParseError.DuplicateContentLength => "duplicate_content_length",
        Http1ParseError.InvalidContentLength => "invalid_content_length",
        Http1ParseError.ContentLengthOverflow => "content_length_overflow",
        Http1ParseError.InvalidTransferEncoding => "invalid_transfer_encoding",
        Http1ParseError.ChunkedNotFinal => "chunked_not_final",
        Http1ParseError.UnsupportedTransferCoding => "unsupported_transfer_coding",
        Http1ParseError.TransferEncodingInHttp10 => "te_in_http10",
        Http1ParseError.MissingHost => "missing_host",
        Http1ParseError.DuplicateHost => "duplicate_host",
        Http1ParseError.InvalidChunkSize => "invalid_chunk_size",
        Http1ParseError.ChunkSizeOverflow => "chunk_size_overflow",
        Http1ParseError.InvalidChunkExtension => "invalid_chunk_extension",
        Http1ParseError.ChunkLineTooLong => "chunk_line_too_long",
        Http1ParseError.InvalidChunkTerminator => "invalid_chunk_terminator",
        Http1ParseError.TrailerTooLarge => "trailer_too_large",
        _ => "invalid_message",
    };

    /// <summary>Throws <see cref="Http1ParseException"/>; kept out of line so parsers' hot paths stay small.</summary>
    [DoesNotReturn]
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    internal static void Throw(Http1ParseError error) => throw new Http1ParseException(error);
}

/// <summary>
/// A message the codec refuses. The connection must be answered with <see cref="StatusCode"/> (request
/// side) and closed: after a framing error nothing that follows on the connection can be trusted.
/// </summary>
public sealed class Http1ParseException : Exception
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public Http1ParseException(Http1ParseError error)
        : base(Http1ParseErrors.Reason(error))
    {
        Error = error;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http1ParseException()
        : this(Http1ParseError.InvalidRequestLine)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http1ParseException(string message)
        : base(message)
    {
        Error = Http1ParseError.InvalidRequestLine;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http1ParseException(string message, Exception innerException)
        : base(message, innerException)
    {
        Error = Http1ParseError.InvalidRequestLine;
    }

    /// <summary>What was wrong.</summary>
    public Http1ParseError Error { get; }

    /// <summary>Status to answer (400, 414, 431, 501, 505).</summary>
    public int StatusCode => Http1ParseErrors.StatusCode(Error);

    /// <summary>Machine-readable reason, e.g. <c>cl_and_te</c>.</summary>
    public string Reason => Http1ParseErrors.Reason(Error);
}

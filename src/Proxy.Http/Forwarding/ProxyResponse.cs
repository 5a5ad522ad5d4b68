using System.Buffers;
using System.Text;
using Proxy.Http.Http1;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Writes the responses the proxy makes itself: status line, <c>x-proxy-error: code</c>,
/// <c>content-type: text/plain</c>, <c>content-length</c>, the connection field, and a one-sentence body
/// (ending in a newline) that names the listener, service, endpoint and cause. Error path only: allocates.
/// </summary>
public static class ProxyResponse
{
    /// <summary>Writes a complete response to <paramref name="writer"/> (nothing is flushed).</summary>
    /// <param name="writer">The client connection's output.</param>
    /// <param name="statusCode">Status, e.g. 502.</param>
    /// <param name="error">Reason code (see <see cref="ProxyErrors"/>).</param>
    /// <param name="sentence">Human explanation, one sentence without the final newline.</param>
    /// <param name="close">True when the connection closes after this response (<c>connection: close</c>).</param>
    /// <param name="http10KeepAlive">True for an HTTP/1.0 client whose connection stays open (<c>connection: keep-alive</c>).</param>
    /// <param name="omitBody">True for HEAD requests: the fields announce the body, which is not sent.</param>
    /// <param name="extraHeader">One more field, e.g. the <c>www-authenticate</c> challenge of a 401.</param>
    public static void Write(IBufferWriter<byte> writer, int statusCode, string error, string sentence, bool close, bool http10KeepAlive = false, bool omitBody = false, Routing.HeaderField? extraHeader = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var body = Encoding.UTF8.GetBytes(sentence + "\n");
        Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, statusCode, Http1ReasonPhrases.For(statusCode));
        Http1HeadWriter.WriteHeader(writer, Encoding.ASCII.GetBytes(ProxyErrors.HeaderName), Encoding.ASCII.GetBytes(error));
        writer.Write("content-type: text/plain; charset=utf-8\r\n"u8);
        if (extraHeader is { } extra)
        {
            Http1HeadWriter.WriteHeader(writer, extra.Name, extra.Value);
        }

        Http1HeadWriter.WriteHeader(writer, "content-length"u8, Encoding.ASCII.GetBytes(body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        if (close)
        {
            writer.Write("connection: close\r\n"u8);
        }
        else if (http10KeepAlive)
        {
            writer.Write("connection: keep-alive\r\n"u8);
        }

        Http1HeadWriter.WriteEndOfHead(writer);
        if (!omitBody)
        {
            writer.Write(body);
        }
    }

    /// <summary>
    /// Writes a gRPC "trailers-only" response for a failed gRPC call: HTTP 200, <c>content-type: application/grpc</c>,
    /// <c>grpc-status</c> (see <see cref="GrpcSemantics.StatusFor"/>), <c>grpc-message</c> (the sentence,
    /// percent-encoded), <c>x-proxy-error</c> and <c>content-length: 0</c>; over HTTP/2 it becomes one HEADERS frame
    /// with END_STREAM, which gRPC clients read as the call's status.
    /// </summary>
    /// <param name="grpcStatus">The status to send instead of the mapping of <paramref name="httpStatus"/> (a fault abort's), or -1.</param>
    public static void WriteGrpc(IBufferWriter<byte> writer, int httpStatus, string error, string sentence, bool close, int grpcStatus = -1)
    {
        ArgumentNullException.ThrowIfNull(writer);
        Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, 200, "OK"u8);
        writer.Write("content-type: application/grpc\r\n"u8);
        Span<byte> code = stackalloc byte[11];
        (grpcStatus >= 0 ? grpcStatus : GrpcSemantics.StatusFor(httpStatus, error)).TryFormat(code, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
        Http1HeadWriter.WriteHeader(writer, "grpc-status"u8, code[..written]);
        Http1HeadWriter.WriteHeader(writer, "grpc-message"u8, GrpcSemantics.EncodeMessage(sentence));
        Http1HeadWriter.WriteHeader(writer, Encoding.ASCII.GetBytes(ProxyErrors.HeaderName), Encoding.ASCII.GetBytes(error));
        writer.Write("content-length: 0\r\n"u8);
        if (close)
        {
            writer.Write("connection: close\r\n"u8);
        }

        Http1HeadWriter.WriteEndOfHead(writer);
    }
}

using System.Buffers;
using System.Text;
using Proxy.Http.Http1;

namespace Proxy.Http.Forwarding;

/// <summary>
/// What the forwarder knows of gRPC (gRPC over HTTP/2, PROTOCOL-HTTP2.md): which requests are gRPC calls, their
/// <c>grpc-timeout</c> deadline, and the gRPC status a proxy-made failure maps to. A gRPC client cannot read an HTTP
/// error page: it wants HTTP 200 with <c>grpc-status</c> and <c>grpc-message</c> ("trailers-only" response).
/// </summary>
public static class GrpcSemantics
{
    /// <summary>gRPC status codes the proxy makes (grpc/doc/statuscodes.md).</summary>
    public const int Unknown = 2;
    public const int DeadlineExceeded = 4;
    public const int ResourceExhausted = 8;
    public const int Unimplemented = 12;
    public const int Internal = 13;
    public const int Unavailable = 14;
    public const int Unauthenticated = 16;
    public const int PermissionDenied = 7;

    /// <summary>Longest <c>grpc-timeout</c> value: at most 8 digits and a unit (the spec's TimeoutValue).</summary>
    private const int MaxTimeoutDigits = 8;

    /// <summary>
    /// True for a gRPC call: <c>content-type</c> is <c>application/grpc</c> or <c>application/grpc+format</c> (or
    /// <c>;params</c>). gRPC-Web (<c>application/grpc-web</c>) carries its status in the body and is not included.
    /// </summary>
    public static bool IsGrpc(Http1HeaderList headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (!headers.TryGetValue("content-type"u8, out var value))
        {
            return false;
        }

        var prefix = "application/grpc"u8;
        if (value.Length < prefix.Length || !Ascii.EqualsIgnoreCase(value[..prefix.Length], prefix))
        {
            return false;
        }

        return value.Length == prefix.Length || value[prefix.Length] is (byte)'+' or (byte)';';
    }

    /// <summary>
    /// Parses a <c>grpc-timeout</c> value (<c>1*8DIGIT</c> then <c>H</c>, <c>M</c>, <c>S</c>, <c>m</c>, <c>u</c> or
    /// <c>n</c>); false for anything else (the header is then ignored, as gRPC servers do).
    /// </summary>
    public static bool TryParseTimeout(ReadOnlySpan<byte> value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length < 2 || value.Length > MaxTimeoutDigits + 1)
        {
            return false;
        }

        long amount = 0;
        foreach (var b in value[..^1])
        {
            var digit = (uint)(b - '0');
            if (digit > 9)
            {
                return false;
            }

            amount = (amount * 10) + digit;
        }

        long ticks;
        switch (value[^1])
        {
            case (byte)'H':
                // At most 99,999,999 hours (8 digits): 3.6e18 ticks, within a long.
                ticks = amount * TimeSpan.TicksPerHour;
                break;
            case (byte)'M':
                ticks = amount * TimeSpan.TicksPerMinute;
                break;
            case (byte)'S':
                ticks = amount * TimeSpan.TicksPerSecond;
                break;
            case (byte)'m':
                ticks = amount * TimeSpan.TicksPerMillisecond;
                break;
            case (byte)'u':
                ticks = amount * TimeSpan.TicksPerMicrosecond;
                break;
            case (byte)'n':
                ticks = amount / 100;
                break;
            default:
                return false;
        }

        timeout = TimeSpan.FromTicks(ticks);
        return true;
    }

    /// <summary>
    /// The gRPC status for a proxy-made failure: the HTTP-to-gRPC mapping of the gRPC spec (http-grpc-status-mapping.md)
    /// for the statuses the proxy makes, with every timeout (the call's own deadline, the proxy's request, per-try,
    /// response and idle timeouts) as <see cref="DeadlineExceeded"/>.
    /// </summary>
    public static int StatusFor(int httpStatus, string error) => error switch
    {
        ProxyErrors.DeadlineExceeded or ProxyErrors.ResponseTimeout or ProxyErrors.RequestTimeout or ProxyErrors.PerTryTimeout
            or ProxyErrors.IdleTimeout => DeadlineExceeded,
        ProxyErrors.RateLimited => ResourceExhausted,
        _ => httpStatus switch
        {
            400 => Internal,
            401 => Unauthenticated,
            403 => PermissionDenied,
            404 or 501 => Unimplemented,
            414 or 431 => ResourceExhausted,
            429 or 502 or 503 or 504 => Unavailable,
            _ => Unknown,
        },
    };

    /// <summary>
    /// The HTTP status for a gRPC status (a fault abort given only as <c>grpcStatus</c>, answered to a request that is
    /// not gRPC): the reverse of the HTTP-to-gRPC mapping, with the codes it does not cover as 500.
    /// </summary>
    public static int HttpStatusFor(int grpcStatus) => grpcStatus switch
    {
        0 => 200,
        3 or 9 or 11 => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        5 => 404,
        6 or 10 => 409,
        ResourceExhausted => 429,
        1 => 499,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        _ => 500,
    };

    /// <summary>
    /// A <c>grpc-message</c> value: UTF-8, with bytes outside printable ASCII and <c>%</c> percent-encoded as the
    /// spec requires.
    /// </summary>
    public static byte[] EncodeMessage(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var utf8 = Encoding.UTF8.GetBytes(message);
        var output = new ArrayBufferWriter<byte>(utf8.Length + 16);
        Span<byte> escape = stackalloc byte[3];
        foreach (var b in utf8)
        {
            if (b is >= 0x20 and <= 0x7E and not (byte)'%')
            {
                output.Write([b]);
                continue;
            }

            escape[0] = (byte)'%';
            escape[1] = (byte)"0123456789ABCDEF"[b >> 4];
            escape[2] = (byte)"0123456789ABCDEF"[b & 0xF];
            output.Write(escape);
        }

        return output.WrittenSpan.ToArray();
    }
}

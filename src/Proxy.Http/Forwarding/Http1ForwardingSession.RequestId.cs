using System.Buffers.Binary;
using Proxy.Core.Configuration;

namespace Proxy.Http.Forwarding;

/// <summary>
/// <c>x-request-id</c>, as Envoy handles it by default: a request that has one keeps it; one without gets a new random
/// UUID (version 4), sent upstream with the request (each retry too) so the app, the peer sidecar and both access logs
/// can be joined on it. The id (at most <see cref="MaxRequestId"/> bytes of it) goes into the access log's
/// <c>request_id</c>. <see cref="RequestIdMode.Preserve"/> makes none. Allocates nothing per request.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    /// <summary>The most bytes of a request's own id the access log keeps.</summary>
    internal const int MaxRequestId = 128;

    private static ReadOnlySpan<byte> RequestIdName => "x-request-id"u8;

    // The current request's id: copied (its own, cut at MaxRequestId) or made here; allocated on a connection's first id.
    private byte[]? _requestId;
    private int _requestIdLength;
    private bool _requestIdGenerated;

    private void TakeRequestId()
    {
        var headers = _request.Headers;
        var index = headers.IndexOf(RequestIdName);
        if (index >= 0)
        {
            var value = headers.GetValue(index);
            _requestIdLength = Math.Min(value.Length, MaxRequestId);
            value[.._requestIdLength].CopyTo(_requestId ??= new byte[MaxRequestId]);
            return;
        }

        if (_options.RequestId == RequestIdMode.Generate)
        {
            _requestIdLength = FormatUuid(_requestId ??= new byte[MaxRequestId]);
            _requestIdGenerated = true;
        }
    }

    /// <summary>A random version 4 UUID (RFC 9562 §5.4) in its 36-character text form; returns 36.</summary>
    internal static int FormatUuid(Span<byte> destination)
    {
        Span<byte> bytes = stackalloc byte[16];
        Random.Shared.NextBytes(bytes);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x40); // version 4
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // variant 10
        var hi = BinaryPrimitives.ReadUInt64BigEndian(bytes);
        var lo = BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]);
        var n = 0;
        for (var i = 0; i < 32; i++)
        {
            if (i is 8 or 12 or 16 or 20)
            {
                destination[n++] = (byte)'-';
            }

            var nibble = (int)((i < 16 ? hi >> (60 - (4 * i)) : lo >> (60 - (4 * (i - 16)))) & 0xF);
            destination[n++] = (byte)"0123456789abcdef"[nibble];
        }

        return n;
    }
}

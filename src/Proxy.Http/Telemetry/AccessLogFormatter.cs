using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Telemetry;

/// <summary>
/// Formats one <see cref="HttpRequestRecord"/> as one line of JSON (an object and a '\n') with
/// <see cref="Utf8JsonWriter"/>. Byte fields from the wire (method, authority, target, protocol) are written as
/// JSON strings: quotes, backslashes and control bytes are escaped by the writer, and a field that is not valid
/// UTF-8 is written with each invalid sequence replaced by U+FFFD, so a hostile request can never break the line.
/// Allocation-free for IP endpoints: names are pre-encoded, numbers and times are formatted into stack buffers.
/// </summary>
internal static class AccessLogFormatter
{
    // Pre-encoded property names: the writer copies them without escaping checks.
    private static readonly JsonEncodedText Time = JsonEncodedText.Encode("time");
    private static readonly JsonEncodedText Listener = JsonEncodedText.Encode("listener");
    private static readonly JsonEncodedText Client = JsonEncodedText.Encode("client");
    private static readonly JsonEncodedText Method = JsonEncodedText.Encode("method");
    private static readonly JsonEncodedText Authority = JsonEncodedText.Encode("authority");
    private static readonly JsonEncodedText Path = JsonEncodedText.Encode("path");
    private static readonly JsonEncodedText Protocol = JsonEncodedText.Encode("protocol");
    private static readonly JsonEncodedText Status = JsonEncodedText.Encode("status");
    private static readonly JsonEncodedText RequestBytes = JsonEncodedText.Encode("request_bytes");
    private static readonly JsonEncodedText ResponseBytes = JsonEncodedText.Encode("response_bytes");
    private static readonly JsonEncodedText DurationMs = JsonEncodedText.Encode("duration_ms");
    private static readonly JsonEncodedText UpstreamMs = JsonEncodedText.Encode("upstream_ms");
    private static readonly JsonEncodedText Service = JsonEncodedText.Encode("service");
    private static readonly JsonEncodedText Subset = JsonEncodedText.Encode("subset");
    private static readonly JsonEncodedText Route = JsonEncodedText.Encode("route");
    private static readonly JsonEncodedText RequestId = JsonEncodedText.Encode("request_id");
    private static readonly JsonEncodedText Upstream = JsonEncodedText.Encode("upstream");
    private static readonly JsonEncodedText Error = JsonEncodedText.Encode("error");
    private static readonly JsonEncodedText ProxyMade = JsonEncodedText.Encode("proxy_made");
    private static readonly JsonEncodedText Attempts = JsonEncodedText.Encode("attempts");
    private static readonly JsonEncodedText Policy = JsonEncodedText.Encode("policy");
    private static readonly JsonEncodedText Limit = JsonEncodedText.Encode("limit");
    private static readonly JsonEncodedText Peer = JsonEncodedText.Encode("peer");
    private static readonly JsonEncodedText Transport = JsonEncodedText.Encode("transport");
    private static readonly JsonEncodedText MutualTls = JsonEncodedText.Encode("mtls");
    private static readonly JsonEncodedText PlainTls = JsonEncodedText.Encode("tls");

    /// <summary>
    /// Writer options: not indented; the relaxed encoder keeps valid non-ASCII UTF-8 readable (a log line is not
    /// HTML, so HTML-sensitive characters need no escaping) while still escaping quotes, '\' and control characters.
    /// Validation is skipped because the shape is fixed here.
    /// </summary>
    internal static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
        SkipValidation = true,
    };

    /// <summary>Writes the record's JSON object to <paramref name="writer"/> and flushes it; the caller adds the newline.</summary>
    public static void Write(Utf8JsonWriter writer, in HttpRequestRecord record, DateTimeOffset time)
    {
        writer.WriteStartObject();

        Span<byte> scratch = stackalloc byte[64];
        var n = FormatRfc3339Utc(time, scratch);
        writer.WriteString(Time, scratch[..n]);

        writer.WriteString(Listener, record.Listener);
        WriteEndPoint(writer, Client, record.Client, scratch);
        WriteBytes(writer, Method, record.Method);
        WriteBytes(writer, Authority, record.Authority);
        WriteBytes(writer, Path, record.Target);
        WriteBytes(writer, Protocol, record.Protocol);
        writer.WriteNumber(Status, record.StatusCode);
        writer.WriteNumber(RequestBytes, record.RequestBytes);
        writer.WriteNumber(ResponseBytes, record.ResponseBytes);
        WriteMilliseconds(writer, DurationMs, record.Duration, scratch);
        if (record.UpstreamDuration is { } upstream)
        {
            WriteMilliseconds(writer, UpstreamMs, upstream, scratch);
        }
        else
        {
            writer.WriteNull(UpstreamMs);
        }

        writer.WriteString(Service, record.Service);
        writer.WriteString(Subset, record.Subset); // null writes JSON null
        writer.WriteString(Route, record.Route);
        WriteEndPoint(writer, Upstream, record.Endpoint?.EndPoint, scratch);
        writer.WriteString(Error, record.Error);
        writer.WriteBoolean(ProxyMade, record.ProxyMade);
        writer.WriteNumber(Attempts, record.Attempts);

        // Present only when known: the request's x-request-id (its own, or made with --http-request-id generate), the limit that refused the request, the authorization policy that decided, the mTLS peer identity.
        if (!record.RequestId.IsEmpty)
        {
            WriteBytes(writer, RequestId, record.RequestId);
        }

        if (record.Limit is not null)
        {
            writer.WriteString(Limit, record.Limit);
        }

        if (record.Policy is not null)
        {
            writer.WriteString(Policy, record.Policy);
        }

        if (record.PeerIdentity is not null)
        {
            writer.WriteString(Peer, record.PeerIdentity);
        }

        // The client connection's TLS: "mtls" (mesh peers, verified client certificates) or "tls"; absent for plaintext.
        if (record.Transport is Proxy.Core.Identity.PeerTransport.MutualTls or Proxy.Core.Identity.PeerTransport.Tls)
        {
            writer.WriteString(Transport, record.Transport == Proxy.Core.Identity.PeerTransport.MutualTls ? MutualTls : PlainTls);
        }

        writer.WriteEndObject();
        writer.Flush();
    }

    /// <summary>
    /// Milliseconds with up to three decimals (microsecond resolution: enough for a proxy hop, short in the log),
    /// formatted as integers: about twice as cheap as formatting a double. Negative spans are written as 0.
    /// </summary>
    private static void WriteMilliseconds(Utf8JsonWriter writer, JsonEncodedText name, TimeSpan span, Span<byte> scratch)
    {
        var micros = Math.Max(0, (span.Ticks + 5) / 10); // ticks are 100 ns: round to the nearest microsecond
        var (whole, fraction) = Math.DivRem(micros, 1000);
        whole.TryFormat(scratch, out var n, provider: System.Globalization.CultureInfo.InvariantCulture);
        if (fraction != 0)
        {
            scratch[n++] = (byte)'.';
            scratch[n++] = (byte)('0' + (fraction / 100));
            scratch[n++] = (byte)('0' + (fraction / 10 % 10));
            scratch[n++] = (byte)('0' + (fraction % 10));
            while (scratch[n - 1] == (byte)'0')
            {
                n--;
            }
        }

        writer.WritePropertyName(name);
        writer.WriteRawValue(scratch[..n], skipInputValidation: true);
    }

    /// <summary>One duration field as a JSON object (tests; allocates).</summary>
    internal static string FormatMilliseconds(TimeSpan span)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            WriteMilliseconds(writer, DurationMs, span, stackalloc byte[64]);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>
    /// A byte field from the wire: null when empty (not parsed, or absent), the bytes when valid UTF-8, else the
    /// bytes decoded with replacement characters (rare path: a pooled char buffer).
    /// </summary>
    private static void WriteBytes(Utf8JsonWriter writer, JsonEncodedText name, ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            writer.WriteNull(name);
            return;
        }

        if (Utf8.IsValid(value))
        {
            writer.WriteString(name, value);
            return;
        }

        WriteReplacingInvalid(writer, name, value);
    }

    private static void WriteReplacingInvalid(Utf8JsonWriter writer, JsonEncodedText name, ReadOnlySpan<byte> value)
    {
        // Each byte decodes to at most one UTF-16 unit (a replacement character per invalid byte at worst).
        var chars = ArrayPool<char>.Shared.Rent(value.Length);
        try
        {
            Utf8.ToUtf16(value, chars, out _, out var written, replaceInvalidSequences: true);
            writer.WriteString(name, chars.AsSpan(0, written));
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
        }
    }

    /// <summary>"a.b.c.d:port" or "[v6]:port"; null when absent; other endpoint kinds through ToString (rare).</summary>
    private static void WriteEndPoint(Utf8JsonWriter writer, JsonEncodedText name, EndPoint? endPoint, Span<byte> scratch)
    {
        switch (endPoint)
        {
            case null:
                writer.WriteNull(name);
                return;
            case IPEndPoint ip when TryFormat(ip, scratch, out var written):
                writer.WriteString(name, scratch[..written]);
                return;
            default:
                writer.WriteString(name, endPoint.ToString());
                return;
        }
    }

    internal static bool TryFormat(IPEndPoint endPoint, Span<byte> destination, out int written)
    {
        written = 0;
        var v6 = endPoint.AddressFamily == AddressFamily.InterNetworkV6;
        var pos = 0;
        if (v6)
        {
            if (destination.IsEmpty)
            {
                return false;
            }

            destination[pos++] = (byte)'[';
        }

        if (!endPoint.Address.TryFormat(destination[pos..], out var addressLength))
        {
            return false;
        }

        pos += addressLength;
        if (v6)
        {
            if (pos >= destination.Length)
            {
                return false;
            }

            destination[pos++] = (byte)']';
        }

        if (pos >= destination.Length)
        {
            return false;
        }

        destination[pos++] = (byte)':';
        if (!endPoint.Port.TryFormat(destination[pos..], out var portLength, provider: System.Globalization.CultureInfo.InvariantCulture))
        {
            return false;
        }

        written = pos + portLength;
        return true;
    }

    /// <summary>"yyyy-MM-ddTHH:mm:ss.fffZ" (RFC 3339, UTC, milliseconds): 24 bytes, formatted by hand (no culture, no allocation).</summary>
    internal static int FormatRfc3339Utc(DateTimeOffset time, Span<byte> destination)
    {
        var utc = time.UtcDateTime;
        utc.Deconstruct(out int year, out int month, out int day); // one date computation instead of three
        var d = destination[..24];
        Digits4(d, 0, year);
        d[4] = (byte)'-';
        Digits2(d, 5, month);
        d[7] = (byte)'-';
        Digits2(d, 8, day);
        d[10] = (byte)'T';
        Digits2(d, 11, utc.Hour);
        d[13] = (byte)':';
        Digits2(d, 14, utc.Minute);
        d[16] = (byte)':';
        Digits2(d, 17, utc.Second);
        d[19] = (byte)'.';
        var ms = utc.Millisecond;
        d[20] = (byte)('0' + (ms / 100));
        Digits2(d, 21, ms % 100);
        d[23] = (byte)'Z';
        return 24;
    }

    private static void Digits2(Span<byte> d, int at, int value)
    {
        d[at] = (byte)('0' + (value / 10));
        d[at + 1] = (byte)('0' + (value % 10));
    }

    private static void Digits4(Span<byte> d, int at, int value)
    {
        Digits2(d, at, value / 100);
        Digits2(d, at + 2, value % 100);
    }
}

namespace Proxy.Http.Http1;

/// <summary>
/// A parsed response head. One instance per upstream connection, refilled by
/// <see cref="Http1ResponseHeadParser.TryParse"/>; spans are valid until the caller advances past the head.
/// </summary>
public sealed class Http1ResponseHead : Http1Head
{
    private int _reasonStart;
    private int _reasonLength;
    private int _upgradeIndex = -1;

    /// <summary>HTTP/1.0 or HTTP/1.1.</summary>
    public Http1Version Version { get; private set; }

    /// <summary>Status code, 100..999.</summary>
    public int StatusCode { get; private set; }

    /// <summary>Reason phrase as sent (may be empty).</summary>
    public ReadOnlySpan<byte> ReasonPhrase => Headers.Source.Span.Slice(_reasonStart, _reasonLength);

    /// <summary>How the response body is framed, given the request method and the status.</summary>
    public Http1BodyKind BodyKind { get; private set; }

    /// <summary>Declared Content-Length, or -1 when absent (also set when the body is None, e.g. HEAD or 304).</summary>
    public long ContentLength { get; private set; }

    /// <summary>The upstream connection may carry another request afterwards.</summary>
    public bool KeepAlive { get; private set; }

    /// <summary>A 1xx other than 101: another (final) response head follows on the same connection.</summary>
    public bool IsInterim => StatusCode is >= 100 and < 200 && StatusCode != 101;

    /// <summary>
    /// After this head both directions become an opaque byte tunnel: 101 Switching Protocols, or a 2xx
    /// answer to CONNECT.
    /// </summary>
    public bool SwitchesToTunnel { get; private set; }

    /// <summary>Value of the Upgrade field, empty when absent.</summary>
    public ReadOnlySpan<byte> Upgrade => _upgradeIndex < 0 ? default : Headers.GetValue(_upgradeIndex);

    /// <summary>Total bytes of the head including the final CRLF.</summary>
    public int HeadLength { get; private set; }

    private byte[]? _typedScratch;
    private int _typedAt;

    /// <summary>
    /// Starts filling the head without parsing (a head handed over typed between the proxy's own stages): status and
    /// reason, room for <paramref name="fieldBytes"/> bytes of names and values; then <see cref="AddTypedField"/> per
    /// field and <see cref="EndTyped"/>.
    /// </summary>
    internal void BeginTyped(int statusCode, ReadOnlySpan<byte> reason, int fieldBytes)
    {
        var scratch = RentScratch(Math.Max(reason.Length + fieldBytes, 1));
        reason.CopyTo(scratch);
        _typedScratch = scratch;
        _typedAt = reason.Length;
        Headers.Reset(scratch);
        SetStatusLine(Http1Version.Http11, statusCode, 0, reason.Length);
    }

    /// <summary>Adds a field (copied; classified as the parser classifies it).</summary>
    internal void AddTypedField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        var scratch = _typedScratch!;
        var at = _typedAt;
        name.CopyTo(scratch.AsSpan(at));
        value.CopyTo(scratch.AsSpan(at + name.Length));
        Headers.Add(at, name.Length, at + name.Length, value.Length, Http1Syntax.Classify(name));
        _typedAt = at + name.Length + value.Length;
    }

    /// <summary>Ends a typed fill: how the body that follows is framed, and whether the connection stays open after it.</summary>
    internal void EndTyped(Http1BodyKind bodyKind, long contentLength, bool keepAlive)
    {
        _typedScratch = null;
        SetFacts(bodyKind, contentLength, keepAlive, switchesToTunnel: false, upgradeIndex: -1, headLength: 0);
    }

    internal void SetStatusLine(Http1Version version, int statusCode, int reasonStart, int reasonLength)
    {
        Version = version;
        StatusCode = statusCode;
        _reasonStart = reasonStart;
        _reasonLength = reasonLength;
    }

    internal void SetFacts(Http1BodyKind bodyKind, long contentLength, bool keepAlive, bool switchesToTunnel, int upgradeIndex, int headLength)
    {
        BodyKind = bodyKind;
        ContentLength = contentLength;
        KeepAlive = keepAlive;
        SwitchesToTunnel = switchesToTunnel;
        _upgradeIndex = upgradeIndex;
        HeadLength = headLength;
    }
}

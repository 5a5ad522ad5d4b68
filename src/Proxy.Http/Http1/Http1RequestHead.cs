namespace Proxy.Http.Http1;

/// <summary>
/// A parsed request head. One instance per client connection, refilled by
/// <see cref="Http1RequestHeadParser.TryParse"/> for every request; nothing in it is allocated per request.
/// Spans it returns point into the caller's read buffer (or, when the head arrived split across buffer
/// segments, into a pooled copy owned by this object) and are valid until the caller advances past the head.
/// </summary>
public sealed class Http1RequestHead : Http1Head
{
    private int _methodStart;
    private int _methodLength;
    private int _targetStart;
    private int _targetLength;

    /// <summary>Method; <see cref="Http1Method.Other"/> for methods without their own value (see <see cref="MethodBytes"/>).</summary>
    public Http1Method Method { get; private set; }

    /// <summary>Method as sent.</summary>
    public ReadOnlySpan<byte> MethodBytes => Headers.Source.Span.Slice(_methodStart, _methodLength);

    /// <summary>Request target: as sent, or its normalized form once <see cref="ReplaceTarget"/> gave one.</summary>
    public ReadOnlySpan<byte> Target => _replacedTarget ? _targetReplacement.Span : Headers.Source.Span.Slice(_targetStart, _targetLength);

    /// <summary>Request target exactly as sent.</summary>
    public ReadOnlySpan<byte> ReceivedTarget => Headers.Source.Span.Slice(_targetStart, _targetLength);

    /// <summary>True when <see cref="Target"/> differs from <see cref="ReceivedTarget"/> (path normalization).</summary>
    public bool TargetReplaced => _replacedTarget;

    private ReadOnlyMemory<byte> _targetReplacement;
    private bool _replacedTarget;

    /// <summary>
    /// Makes <paramref name="target"/> (the same form, e.g. the normalized path) the target everything after the
    /// parse sees: routes, policies, the upstream request and the access log. The memory must stay valid as long
    /// as this head; the next parse forgets it.
    /// </summary>
    public void ReplaceTarget(ReadOnlyMemory<byte> target)
    {
        _targetReplacement = target;
        _replacedTarget = true;
    }

    /// <summary>Form of <see cref="Target"/>.</summary>
    public Http1TargetForm TargetForm { get; private set; }

    /// <summary>HTTP/1.0 or HTTP/1.1.</summary>
    public Http1Version Version { get; private set; }

    /// <summary>How the request body is framed. CONNECT has no body (what follows is tunnel data).</summary>
    public Http1BodyKind BodyKind { get; private set; }

    /// <summary>Declared Content-Length, or -1 when absent.</summary>
    public long ContentLength { get; private set; }

    /// <summary>
    /// Whether the client connection may carry another request after this one: HTTP/1.1 unless
    /// <c>Connection: close</c>; HTTP/1.0 only with <c>Connection: keep-alive</c>.
    /// </summary>
    public bool KeepAlive { get; private set; }

    /// <summary><c>Expect: 100-continue</c> was sent in an HTTP/1.1 request (ignored in HTTP/1.0, RFC 9110 §10.1.1).</summary>
    public bool ExpectContinue { get; private set; }

    /// <summary>
    /// An HTTP/1.1 request with an Upgrade field named in Connection (e.g. WebSocket). After a 101
    /// response the connection becomes a byte tunnel. Upgrade in HTTP/1.0 is ignored (RFC 9110 §7.8).
    /// </summary>
    public bool IsUpgrade { get; private set; }

    /// <summary>Value of the Upgrade field (protocol list), empty when absent.</summary>
    public ReadOnlySpan<byte> Upgrade => _upgradeIndex < 0 ? default : Headers.GetValue(_upgradeIndex);

    /// <summary>A Host field was sent (exactly one; several are refused).</summary>
    public bool HasHost => _hostIndex >= 0;

    /// <summary>Host value, empty when absent.</summary>
    public ReadOnlySpan<byte> Host => _hostIndex < 0 ? default : Headers.GetValue(_hostIndex);

    /// <summary>Total bytes of the head including leading empty lines and the final CRLF.</summary>
    public int HeadLength { get; private set; }

    private int _hostIndex = -1;
    private int _upgradeIndex = -1;

    internal void SetStartLine(Http1Method method, int methodStart, int methodLength, int targetStart, int targetLength, Http1TargetForm form, Http1Version version)
    {
        Method = method;
        _methodStart = methodStart;
        _methodLength = methodLength;
        _targetStart = targetStart;
        _targetLength = targetLength;
        TargetForm = form;
        Version = version;
        _replacedTarget = false;
        _targetReplacement = default;
    }

    internal void SetFacts(Http1BodyKind bodyKind, long contentLength, bool keepAlive, bool expectContinue, bool isUpgrade, int hostIndex, int upgradeIndex, int headLength)
    {
        BodyKind = bodyKind;
        ContentLength = contentLength;
        KeepAlive = keepAlive;
        ExpectContinue = expectContinue;
        IsUpgrade = isUpgrade;
        _hostIndex = hostIndex;
        _upgradeIndex = upgradeIndex;
        HeadLength = headLength;
    }
}

using System.Buffers;
using Proxy.Core.Configuration;
using Proxy.Core.Identity;
using Proxy.Http.Http1;
using Proxy.Http.Routing;

namespace Proxy.Http.Forwarding;

/// <summary>
/// What a route does besides choosing a destination: the target a request goes upstream with (<c>rewrite</c>), and
/// the answers a route gives itself (<c>redirect</c>, <c>directResponse</c>). Both allocate nothing per request.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    // The rewritten request target of the current request (grown on demand, kept for the connection's next requests);
    // length -1 when the request goes upstream with the target it came with.
    private byte[]? _upstreamTarget;
    private int _upstreamTargetLength = -1;

    /// <summary>The request target as it goes upstream: rewritten by the route, or as received.</summary>
    private ReadOnlySpan<byte> UpstreamTarget => _upstreamTargetLength < 0 ? _request.Target : _upstreamTarget.AsSpan(0, _upstreamTargetLength);

    // The normalized target of the current request (grown on demand, kept for the connection's next requests).
    private byte[]? _normalizedTarget;

    /// <summary>
    /// Normalizes the request's path (<see cref="Http1ForwarderOptions.PathNormalization"/>) before anything looks at
    /// it; false when the path must be refused (an encoded NUL). Allocates nothing once the buffer has grown.
    /// </summary>
    private bool NormalizePath()
    {
        var mode = _options.PathNormalization;
        var target = _request.Target;
        if (Http1PathNormalizer.IsSurelyNormal(target, _request.TargetForm, mode))
        {
            return true;
        }

        var max = Http1PathNormalizer.MaxLength(target);
        if (_normalizedTarget is null || _normalizedTarget.Length < max)
        {
            _normalizedTarget = new byte[Math.Max(max, 256)];
        }

        switch (Http1PathNormalizer.Normalize(target, _request.TargetForm, mode, _normalizedTarget, out var written))
        {
            case PathNormalizeResult.Changed:
                _request.ReplaceTarget(_normalizedTarget.AsMemory(0, written));
                return true;
            case PathNormalizeResult.Rejected:
                return false;
            default:
                return true;
        }
    }

    private void RewriteTarget(RouteAction action)
    {
        var target = _request.Target;
        var max = action.MaxUpstreamTargetLength(target);
        if (_upstreamTarget is null || _upstreamTarget.Length < max)
        {
            _upstreamTarget = new byte[Math.Max(max, 256)];
        }

        _upstreamTargetLength = action.WriteUpstreamTarget(target, _request.TargetForm, _upstreamTarget);
    }

    /// <summary>
    /// Answers a request whose route redirects it or responds directly: the route's rate limit applies, then the
    /// response goes out with the route's response header changes. Not a failure: no <c>x-proxy-error</c>, and the
    /// access log has the status with <c>proxy_made</c> and no error. True when the client connection stays usable.
    /// </summary>
    private async ValueTask<bool> AnswerFromRouteAsync(Route route)
    {
        if (!TryAdmit(null, route))
        {
            return await RespondLimitedAsync().ConfigureAwait(false);
        }

        // A request body nobody read leaves the connection out of step: close it (as RespondAsync does).
        var unreadBody = _request.BodyKind == Http1BodyKind.Chunked || (_request.BodyKind == Http1BodyKind.ContentLength && _request.ContentLength > 0);
        var keepAlive = _request.KeepAlive && !unreadBody && !_draining;
        var action = route.Action;
        var mutations = action.ResponseHeaders;
        var output = _client.Output;
        var status = action.Redirect?.StatusCode ?? action.Direct!.StatusCode;
        _status = status;
        _error = null;
        _proxyMade = true;
        Http1HeadWriter.WriteStatusLine(output, Http1Version.Http11, status, Http1ReasonPhrases.For(status));
        if (action.Redirect is { } redirect && !mutations.IsRemoved("location"u8))
        {
            output.Write("location: "u8);
            redirect.WriteLocation(output, new RequestView(_request), _peer is { Transport: PeerTransport.Tls or PeerTransport.MutualTls });
            output.Write("\r\n"u8);
        }

        ReadOnlySpan<byte> body = action.Direct is { } direct ? direct.Body : default;
        if (!body.IsEmpty && !mutations.IsRemoved("content-type"u8))
        {
            output.Write("content-type: text/plain; charset=utf-8\r\n"u8);
        }

        foreach (var field in mutations.Sets)
        {
            Http1HeadWriter.WriteHeader(output, field.Name, field.Value);
        }

        foreach (var field in mutations.Adds)
        {
            Http1HeadWriter.WriteHeader(output, field.Name, field.Value);
        }

        Http1HeadWriter.WriteHeader(output, "content-length"u8, action.Direct is { } sized ? sized.ContentLength : "0"u8);
        if (!keepAlive)
        {
            output.Write("connection: close\r\n"u8);
        }
        else if (_request.Version == Http1Version.Http10)
        {
            output.Write("connection: keep-alive\r\n"u8);
        }

        Http1HeadWriter.WriteEndOfHead(output);
        if (_request.Method != Http1Method.Head)
        {
            output.Write(body);
            _responseBytes = body.Length;
        }

        ConsumeRequestHead();
        return await FlushClientAsync().ConfigureAwait(false) && keepAlive;
    }
}

using Microsoft.Extensions.Logging;
using Proxy.Core.Balancing;
using Proxy.Http.Http1;

namespace Proxy.Http.Forwarding;

/// <summary>Settings of an <see cref="Http1Forwarder"/> (one per listener). Immutable.</summary>
public sealed record Http1ForwarderOptions
{
    /// <summary>Limits of the request and response head parsers and of chunked bodies.</summary>
    public Http1ParserOptions Parser { get; init; } = Http1ParserOptions.Default;

    /// <summary>
    /// Test seam, not a setting: every head between the forwarder and HTTP/2 crosses as HTTP/1.1 text, parsed on the
    /// far side (the paths that typed heads replaced, still used for replayed requests and refused heads), so tests can
    /// compare both: request heads to HTTP/2 upstream exchanges (<c>Http1ForwardingSession.Http2Head.cs</c>), response
    /// heads to HTTP/2 lanes, and HTTP/2 clients' request heads into lanes (<c>Http2ServerSession</c>).
    /// </summary>
    internal bool TextHeadsForHttp2 { get; init; }

    /// <summary>
    /// Longest wait for the upstream's response head, counted from the request head written upstream and
    /// restarted by every piece of request body sent (so a long upload does not time out while it progresses).
    /// 504 <c>response_timeout</c> when it expires. Envoy's default route timeout. Infinite turns it off.
    /// </summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// The whole request, from its head parsed to its response complete: fault delays, connects, every try and the
    /// backoffs between them, the response body. 504 <c>request_timeout</c> before the response head, a reset after it.
    /// Routes override it (<c>timeouts.request</c>). Infinite (the default) turns it off.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// No byte either way on one request/response for this long aborts it: 504 <c>idle_timeout</c> before the response
    /// head, a reset after it (Envoy's stream idle timeout). Upgraded and CONNECT tunnels use <see cref="TunnelIdleTimeout"/>.
    /// Routes override it (<c>timeouts.idle</c>). Infinite turns it off.
    /// </summary>
    public TimeSpan StreamIdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Longest time from a request head's first byte to its end: a client slower than this (slowloris) is answered
    /// 408 <c>header_timeout</c> and closed. Infinite turns it off (the idle timeout still bounds it).
    /// </summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How request paths are normalized before routing, authorization and forwarding (<see cref="Http1.Http1PathNormalizer"/>);
    /// Istio's default, <see cref="Proxy.Core.Configuration.PathNormalization.Base"/>.
    /// </summary>
    public Proxy.Core.Configuration.PathNormalization PathNormalization { get; init; } = Proxy.Core.Configuration.PathNormalization.Base;

    /// <summary>Whether a request without <c>x-request-id</c> gets a new one (Envoy's default) or only its own is passed on (ours).</summary>
    public Proxy.Core.Configuration.RequestIdMode RequestId { get; init; } = Proxy.Core.Configuration.RequestIdMode.Preserve;

    /// <summary>
    /// Longest wait for the (next) request head on a client connection; the connection is then closed
    /// without a response (like Envoy's HTTP idle timeout). Infinite turns it off.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Idle timeout of an upgraded (WebSocket) or CONNECT tunnel: no byte either way for this long resets both sides.</summary>
    public TimeSpan TunnelIdleTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Clock for durations, timeouts and balancer latency samples.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Randomness for weighted traffic splits, retry backoff jitter and fault injection percentages.</summary>
    public IRandomSource Random { get; init; } = SharedRandomSource.Instance;

    /// <summary>Telemetry: called for every request (see <see cref="IHttpRequestObserver"/>).</summary>
    public IHttpRequestObserver Observer { get; init; } = NullHttpRequestObserver.Instance;

    /// <summary>Logger factory; null logs nothing.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>JWT authentication and authorization policies checked before routing; null: none (the default).</summary>
    public Authorization.HttpSecurity? Security { get; init; }

    /// <summary>
    /// Fires when the proxy starts a graceful drain (lifecycle): HTTP/1.1 client connections answer their next
    /// response with <c>Connection: close</c> and close once idle for <see cref="DrainIdleTimeout"/>; HTTP/2 client
    /// connections (<see cref="Http2.Server.Http2Server"/>) get GOAWAY and close when their streams are done.
    /// Default: never fires.
    /// </summary>
    public CancellationToken Drain { get; init; }

    /// <summary>
    /// During a drain, an idle HTTP/1.1 client connection is closed once it has been idle this long (at once if it
    /// already was): a client in the middle of a request loop gets its next response with <c>Connection: close</c>
    /// instead of racing a close. Default 1 s.
    /// </summary>
    public TimeSpan DrainIdleTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Every problem with these settings (empty when valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>(Parser.Validate());
        if (ResponseTimeout <= TimeSpan.Zero && ResponseTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"ResponseTimeout must be positive or infinite, not {ResponseTimeout}.");
        }

        if (IdleTimeout <= TimeSpan.Zero && IdleTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"IdleTimeout must be positive or infinite, not {IdleTimeout}.");
        }

        foreach (var (name, value) in new[] { ("RequestTimeout", RequestTimeout), ("StreamIdleTimeout", StreamIdleTimeout), ("HeaderTimeout", HeaderTimeout) })
        {
            if (value <= TimeSpan.Zero && value != Timeout.InfiniteTimeSpan)
            {
                errors.Add($"{name} must be positive or infinite, not {value}.");
            }
        }

        if (DrainIdleTimeout < TimeSpan.Zero)
        {
            errors.Add($"DrainIdleTimeout must not be negative, not {DrainIdleTimeout}.");
        }

        if (TunnelIdleTimeout <= TimeSpan.Zero && TunnelIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"TunnelIdleTimeout must be positive or infinite, not {TunnelIdleTimeout}.");
        }

        return errors;
    }
}

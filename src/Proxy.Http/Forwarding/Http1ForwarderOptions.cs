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
    /// Longest wait for the upstream's response head, counted from the request head written upstream and
    /// restarted by every piece of request body sent (so a long upload does not time out while it progresses).
    /// 504 <c>response_timeout</c> when it expires. Envoy's default route timeout. Infinite turns it off.
    /// </summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Longest wait for the (next) request head on a client connection; the connection is then closed
    /// without a response (like Envoy's HTTP idle timeout). Infinite turns it off.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Idle timeout of an upgraded (WebSocket) or CONNECT tunnel: no byte either way for this long resets both sides.</summary>
    public TimeSpan TunnelIdleTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Clock for durations, timeouts and balancer latency samples.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Randomness for weighted traffic splits.</summary>
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

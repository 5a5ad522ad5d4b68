namespace Proxy.Core.Configuration;

/// <summary>
/// A service's <c>http2Keepalive</c>: PINGs on its HTTP/2 upstream connections. A value left out takes the sidecar-wide
/// default (<c>http.h2KeepaliveInterval</c> / <c>http.h2KeepaliveTimeout</c>, flags <c>--h2-keepalive-interval</c> /
/// <c>--h2-keepalive-timeout</c>).
/// </summary>
public sealed record Http2KeepaliveConfig
{
    /// <summary>Default interval: on, like Linkerd (Envoy's is off); see README, "HTTP/2 keepalive".</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(30);

    /// <summary>Default timeout for the PING's answer.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Shortest interval and timeout accepted (shorter would be PING traffic, not liveness).</summary>
    public static readonly TimeSpan Min = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest interval accepted.</summary>
    public static readonly TimeSpan MaxInterval = TimeSpan.FromHours(24);

    /// <summary>Longest timeout accepted.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Nothing received on a connection for this long sends a PING; <see cref="Timeout.InfiniteTimeSpan"/> (<c>off</c>)
    /// turns keepalive off for the service; null: the default.
    /// </summary>
    public TimeSpan? Interval { get; init; }

    /// <summary>A PING unanswered (no ACK, no other frame) for this long closes the connection; null: the default.</summary>
    public TimeSpan? Timeout { get; init; }
}

namespace Proxy.Core.Configuration;

/// <summary>
/// A route's timeouts; config key <c>timeouts</c>. Each key left out falls back to the listener-wide setting named
/// below; <see cref="Timeout.InfiniteTimeSpan"/> (written <c>off</c> or <c>0s</c>) turns that timeout off for the route.
/// </summary>
public sealed record RouteTimeoutsConfig
{
    /// <summary>
    /// Key <c>request</c> (default <c>http.requestTimeout</c>): the whole request, from its head received to its response
    /// complete, including fault delays, connects, every try and the backoffs between them, and the response body
    /// (Envoy's route timeout). 504 <c>request_timeout</c> before the response head, a reset after it.
    /// </summary>
    public TimeSpan? Request { get; init; }

    /// <summary>
    /// Key <c>perTry</c> (default <c>http.responseTimeout</c>): one try's wait for the response head after its request
    /// head was sent, restarted by request body progress. 504 <c>per_try_timeout</c>; retried when the route's retry
    /// policy retries gateway errors.
    /// </summary>
    public TimeSpan? PerTry { get; init; }

    /// <summary>
    /// Key <c>idle</c> (default <c>http.streamIdleTimeout</c>): no byte either way on the request/response for this long
    /// aborts it: 504 <c>idle_timeout</c> before the response head, a reset after it.
    /// </summary>
    public TimeSpan? Idle { get; init; }

    /// <summary>
    /// Key <c>connect</c> (default <c>tcp.connectTimeout</c>): getting an upstream connection (a connect, or a wait for a
    /// free pooled one). Shortens the listener-wide connect timeout, never lengthens it. 504 <c>upstream_connect_timeout</c>,
    /// retried as a connect failure.
    /// </summary>
    public TimeSpan? Connect { get; init; }
}

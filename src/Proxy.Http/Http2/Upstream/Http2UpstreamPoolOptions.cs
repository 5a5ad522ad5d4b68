using Proxy.Core.Addresses;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Client;

namespace Proxy.Http.Http2.Upstream;

/// <summary>Limits and timers of an <see cref="Http2UpstreamPool"/>; every limit applies per endpoint address.</summary>
public sealed record Http2UpstreamPoolOptions
{
    /// <summary>Settings of every HTTP/2 connection the pool opens (windows, header limits, stall timeout).</summary>
    public Http2ClientOptions Client { get; init; } = Http2ClientOptions.Default;

    /// <summary>
    /// HTTP/2 connections open to one endpoint at most (taking new streams or being connected; connections draining
    /// after a GOAWAY are not counted). A second connection is only opened when every open one is at the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS. 0 = unlimited.
    /// </summary>
    public int MaxConnectionsPerEndpoint { get; init; } = 16;

    /// <summary>A connection carrying no stream for this long is closed (GOAWAY NO_ERROR). Infinite keeps them.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long a rent waits for a stream slot when every connection of the endpoint is at its concurrent-stream limit
    /// and the connection limit is reached, before it fails with <c>ConnectFailureCause.PoolExhausted</c>.
    /// </summary>
    public TimeSpan WaitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a new connection may take, after TCP connect, to receive the server's first SETTINGS frame. An endpoint
    /// that answers anything else, closes, or stays silent fails the rent with <c>ConnectFailureCause.ProtocolError</c>.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Exchange objects (pipes, heads, field lists) kept for reuse per pool.</summary>
    public int MaxPooledExchanges { get; init; } = 1024;

    /// <summary>
    /// Limits for parsing the HTTP/1.1 request bytes the forwarder writes into an exchange (already validated by the
    /// forwarder's own parser, so generous: request mutations may have added fields).
    /// </summary>
    public Http1ParserOptions RequestParser { get; init; } = Http1ParserOptions.Default with
    {
        MaxStartLineBytes = 64 * 1024,
        MaxHeaderBytes = 256 * 1024,
        MaxHeaderCount = 1000,
        MaxTrailerBytes = 64 * 1024,
        RequireHostForHttp11 = false,
        AllowUnregisteredMethods = true,
    };

    /// <summary>
    /// Per endpoint, asked once per new connection: the service the endpoint belongs to (the label of
    /// <c>proxy_http2_keepalive_timeouts_total</c> and the warning log) and its keepalive interval and timeout. Null, or
    /// a null answer: <see cref="Http2ClientOptions.KeepaliveInterval"/> and <see cref="Http2ClientOptions.KeepaliveTimeout"/>
    /// of <see cref="Client"/>, service "".
    /// </summary>
    public Func<UpstreamAddress, Http2EndpointKeepalive?>? KeepaliveFor { get; init; }

    /// <summary>The clock for idle stamps, the idle sweep, wait and handshake timeouts.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Every invalid setting, named (empty when valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Client is null)
        {
            errors.Add($"{nameof(Client)} must not be null.");
        }

        else
        {
            ValidateKeepalive(Client.KeepaliveInterval, Client.KeepaliveTimeout, "Client.", errors);
        }

        if (MaxConnectionsPerEndpoint < 0)
        {
            errors.Add($"{nameof(MaxConnectionsPerEndpoint)} must be 0 (unlimited) or positive, not {MaxConnectionsPerEndpoint}.");
        }

        if (IdleTimeout <= TimeSpan.Zero && IdleTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{nameof(IdleTimeout)} must be positive or infinite, not {IdleTimeout}.");
        }

        if (WaitTimeout < TimeSpan.Zero && WaitTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{nameof(WaitTimeout)} must be zero, positive or infinite, not {WaitTimeout}.");
        }

        if (HandshakeTimeout <= TimeSpan.Zero && HandshakeTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{nameof(HandshakeTimeout)} must be positive or infinite, not {HandshakeTimeout}.");
        }

        if (MaxPooledExchanges < 0)
        {
            errors.Add($"{nameof(MaxPooledExchanges)} must be 0 or positive, not {MaxPooledExchanges}.");
        }

        if (RequestParser is null || TimeProvider is null)
        {
            errors.Add($"{nameof(RequestParser)} and {nameof(TimeProvider)} must not be null.");
        }

        return errors;
    }

    /// <summary>Keepalive: interval positive or infinite (off); timeout positive and finite.</summary>
    internal static void ValidateKeepalive(TimeSpan interval, TimeSpan timeout, string prefix, List<string> errors)
    {
        if (interval <= TimeSpan.Zero && interval != Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{prefix}{nameof(Http2ClientOptions.KeepaliveInterval)} must be positive or infinite (off), not {interval}.");
        }

        if (timeout <= TimeSpan.Zero || timeout == Timeout.InfiniteTimeSpan)
        {
            errors.Add($"{prefix}{nameof(Http2ClientOptions.KeepaliveTimeout)} must be positive and finite, not {timeout}.");
        }
    }
}

/// <summary>
/// The keepalive of the HTTP/2 connections to one endpoint (<see cref="Http2UpstreamPoolOptions.KeepaliveFor"/>):
/// <paramref name="Service"/> names the endpoint's service in logs and metrics; <paramref name="Interval"/>
/// <see cref="Timeout.InfiniteTimeSpan"/> is off.
/// </summary>
public readonly record struct Http2EndpointKeepalive(string Service, TimeSpan Interval, TimeSpan Timeout);

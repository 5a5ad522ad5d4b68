using Proxy.Http.Http2.Frames;

namespace Proxy.Http.Http2.Client;

/// <summary>Settings of one client-side HTTP/2 connection (to an upstream). Immutable; one instance may serve every connection of a pool.</summary>
public sealed record Http2ClientOptions
{
    /// <summary>Default options.</summary>
    public static readonly Http2ClientOptions Default = new();

    /// <summary>SETTINGS_INITIAL_WINDOW_SIZE we advertise: how much response body of one stream may wait unread.</summary>
    public int InitialStreamWindowSize { get; init; } = 256 * 1024;

    /// <summary>Receive window of the whole connection (raised from 65535 by a WINDOW_UPDATE right after our SETTINGS).</summary>
    public int InitialConnectionWindowSize { get; init; } = 1024 * 1024;

    /// <summary>SETTINGS_HEADER_TABLE_SIZE we advertise (our HPACK decoder's dynamic table).</summary>
    public int HeaderTableSize { get; init; } = 4096;

    /// <summary>SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce on response heads and trailers.</summary>
    public int MaxHeaderListSize { get; init; } = 64 * 1024;

    /// <summary>Cap on one response field block's compressed bytes across CONTINUATION frames.</summary>
    public int MaxHeaderBlockSize { get; init; } = Http2HeaderBlockAssembler.DefaultMaxBlockSize;

    /// <summary>
    /// Streams we allow ourselves before the peer's first SETTINGS tells its MAX_CONCURRENT_STREAMS (RFC 9113 leaves it
    /// unlimited; 100 is the value the RFC recommends as a minimum, so no conforming server refuses it).
    /// </summary>
    public int InitialMaxConcurrentStreams { get; init; } = 100;

    /// <summary>How long a request body may wait for the peer to open a flow-control window before the stream is reset (CANCEL).</summary>
    public TimeSpan SendStallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Interim (1xx) heads kept per stream before the final head; more is treated as a malformed response.</summary>
    public int MaxInterimResponses { get; init; } = 8;

    /// <summary>
    /// Keepalive: when nothing was received from the server for this long, a PING is sent (idle connections too).
    /// <see cref="Timeout.InfiniteTimeSpan"/> (the default here) turns keepalive off. See <see cref="KeepaliveTimeout"/>.
    /// </summary>
    public TimeSpan KeepaliveInterval { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Keepalive: how long after its PING the connection waits for the ACK (or any other frame) before it is declared
    /// dead: no new streams, open streams end <see cref="Http2StreamEndKind.ConnectionLost"/>, GOAWAY (best effort), closed.
    /// </summary>
    public TimeSpan KeepaliveTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time source for the stall timeout and the keepalive timer.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}

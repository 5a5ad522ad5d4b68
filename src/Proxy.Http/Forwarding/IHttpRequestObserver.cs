using System.Net;
using Proxy.Core.Addresses;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Receives one call per request from the HTTP forwarder: telemetry (metrics, access log) hangs here, so the
/// forwarder knows nothing of exporters. Called on the forwarding path: implementations must not block and
/// should not allocate per call. Calls for one downstream connection never overlap; calls for different
/// connections run concurrently.
/// </summary>
public interface IHttpRequestObserver
{
    /// <summary>A request was routed: its service (and route) are known and it is about to go upstream (in flight +1).</summary>
    void OnRequestRouted(string listener, string service, string route);

    /// <summary>
    /// A request ended: its response was fully sent (or the exchange failed). Called exactly once for every request
    /// head the forwarder parsed, and for requests refused before a head could be parsed (bad request). When
    /// <see cref="HttpRequestRecord.Routed"/> is true it ends the in-flight count of the matching <see cref="OnRequestRouted"/>.
    /// </summary>
    void OnRequestCompleted(in HttpRequestRecord record);

    /// <summary>A request is tried again under its retry policy (<paramref name="reason"/>: the condition, e.g. <c>connect-failure</c>, <c>503</c>).</summary>
    void OnRetry(string listener, string service, string reason)
    {
    }

    /// <summary>The route's fault injection delayed (<paramref name="kind"/> <c>delay</c>) or aborted (<c>abort</c>) a request.</summary>
    void OnFaultInjected(string listener, string route, string kind)
    {
    }

    /// <summary>A retry the policy allowed was not made: the service's retry budget is spent.</summary>
    void OnRetryBudgetExhausted(string listener, string service)
    {
    }

    /// <summary>A request was refused with 429 by a local rate limit (<paramref name="route"/>: "" for a service's own limit).</summary>
    void OnRateLimited(string listener, string service, string route)
    {
    }
}

/// <summary>
/// What happened to one request. Spans point into the forwarder's buffers: valid only during the call; copy what you keep.
/// </summary>
public readonly ref struct HttpRequestRecord
{
    /// <summary>Listener name (e.g. outbound, inbound, or the explicit listener's name).</summary>
    public required string Listener { get; init; }

    /// <summary>Service name, "passthrough" for an unknown original destination, "unknown" when none was chosen (no route, bad request).</summary>
    public required string Service { get; init; }

    /// <summary>Subset the request went to (e.g. v2), or null.</summary>
    public string? Subset { get; init; }

    /// <summary>Matched route's name, or "" (no routes configured, or none matched).</summary>
    public required string Route { get; init; }

    /// <summary>True when <see cref="IHttpRequestObserver.OnRequestRouted"/> was called for this request.</summary>
    public bool Routed { get; init; }

    public ReadOnlySpan<byte> Method { get; init; }

    /// <summary>Host header (or absolute-form authority), as sent.</summary>
    public ReadOnlySpan<byte> Authority { get; init; }

    /// <summary>Request target as sent (origin-form path and query, absolute-form URI, or CONNECT authority).</summary>
    public ReadOnlySpan<byte> Target { get; init; }

    /// <summary>"HTTP/1.0" or "HTTP/1.1".</summary>
    public ReadOnlySpan<byte> Protocol { get; init; }

    /// <summary>The request's <c>x-request-id</c>, its own or the one the proxy made (empty: none; at most 128 bytes kept).</summary>
    public ReadOnlySpan<byte> RequestId { get; init; }

    /// <summary>Final status code sent to the client (101 for an upgrade); 0 when no response could be sent.</summary>
    public int StatusCode { get; init; }

    /// <summary>Request body bytes read from the client (payload, without chunk framing); tunnel bytes client to upstream for upgrades.</summary>
    public long RequestBytes { get; init; }

    /// <summary>Response body bytes sent to the client (payload, without chunk framing); tunnel bytes upstream to client for upgrades.</summary>
    public long ResponseBytes { get; init; }

    /// <summary>From the request head parsed to the response fully sent.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>From the request head written upstream to the upstream's response head read; null when there was none.</summary>
    public TimeSpan? UpstreamDuration { get; init; }

    /// <summary>The upstream endpoint tried last, or null.</summary>
    public UpstreamAddress? Endpoint { get; init; }

    public EndPoint? Client { get; init; }

    /// <summary>Machine-readable reason when the proxy made the response or the exchange failed (see <see cref="ProxyErrors"/>), else null.</summary>
    public string? Error { get; init; }

    /// <summary>True when the proxy itself generated the response (no route, upstream refused, bad request...).</summary>
    public bool ProxyMade { get; init; }

    /// <summary>Upstream attempts made (more than 1 when a reused connection turned out closed and the request was retried).</summary>
    public int Attempts { get; init; }

    /// <summary>True when the last attempt used a pooled (reused) upstream connection.</summary>
    public bool ReusedConnection { get; init; }

    /// <summary>
    /// The limit that refused the request (error <c>overflow</c>: maxConnections, maxPendingRequests, maxRequests,
    /// maxRetries; error <c>rate_limited</c>: rateLimit), else null.
    /// </summary>
    public string? Limit { get; init; }

    /// <summary>The authorization policy that decided the request (or <c>no_allow_match</c> / <c>none</c>); null when none was evaluated.</summary>
    public string? Policy { get; init; }

    /// <summary>The connection's verified peer identity (SPIFFE ID), or null.</summary>
    public string? PeerIdentity { get; init; }

    /// <summary>How the client's connection arrived when it was TLS (mutual TLS: mesh peers), else null (plaintext).</summary>
    public Proxy.Core.Identity.PeerTransport? Transport { get; init; }
}

/// <summary>Does nothing (tests, or telemetry turned off).</summary>
public sealed class NullHttpRequestObserver : IHttpRequestObserver
{
    public static NullHttpRequestObserver Instance { get; } = new();

    public void OnRequestRouted(string listener, string service, string route)
    {
    }

    public void OnRequestCompleted(in HttpRequestRecord record)
    {
    }
}

namespace Proxy.Http.Forwarding;

/// <summary>
/// Implemented by upstream connection contexts that carry one exchange over another protocol (an HTTP/2 stream of
/// <c>Http2UpstreamPool</c>): how it failed, so the forwarder can retry what the upstream never processed and explain
/// the rest. Read before the connection is returned to its pool (the object is reused afterwards).
/// </summary>
public interface IUpstreamExchangeStatus
{
    /// <summary>
    /// True when the upstream certainly did not process the request (REFUSED_STREAM, or a GOAWAY whose last stream id
    /// is below it): safe to send again on another connection, whatever the method, if its body can be sent again.
    /// </summary>
    bool WasRefused { get; }

    /// <summary>How the exchange failed, in words for proxy-made responses; null when nothing failed (yet).</summary>
    string? FailureDescription { get; }
}

namespace Proxy.Core.Upstream;

/// <summary>
/// A service's own way to its endpoints, used instead of the listener's shared connector and pools: a service with
/// TLS origination dials through a TLS connector, and its pools hold only those connections, so a TLS and a plaintext
/// service on the same endpoint address never share a connection. Null members fall back to the listener's.
/// </summary>
/// <param name="Connector">Opaque TCP connections (TcpProxy).</param>
/// <param name="Http1Pool">HTTP/1.1 exchanges.</param>
/// <param name="Http2Pool">HTTP/2 streams (services with upstream protocol http2, or "same" for HTTP/2 clients).</param>
public sealed record ServiceUpstreams(IUpstreamConnector? Connector, IUpstreamPool? Http1Pool, IUpstreamPool? Http2Pool)
{
    /// <summary>
    /// Mesh: HTTP/1.1 requests (not 1.0, not Upgrade or CONNECT) of a service whose upstream protocol is "same" go as
    /// HTTP/2 streams over <see cref="Http2Pool"/>, marked so that the peer sidecar gives them to its app as HTTP/1.1.
    /// </summary>
    public bool UpgradeHttp1 { get; init; }
}

namespace Proxy.Core.Identity;

/// <summary>
/// Who is on the other end of a connection, as a TLS stage authenticated it: set on the connection's features by the
/// stage that terminated TLS and verified the peer's certificate (mesh mTLS), read by routing, authorization
/// policies, access logs and metrics. Absent on plaintext connections. HTTP/2 lanes carry their connection's.
/// </summary>
public interface IPeerIdentityFeature
{
    /// <summary>The peer's verified identity, a SPIFFE ID such as <c>spiffe://cluster.local/ns/default/sa/web</c>; null when the peer presented none.</summary>
    string? PeerIdentity { get; }

    /// <summary>How the connection arrived: <see cref="PeerTransport.MutualTls"/>, <see cref="PeerTransport.Tls"/> (no client certificate) or <see cref="PeerTransport.Plaintext"/>.</summary>
    PeerTransport Transport { get; }
}

/// <summary>How a connection's peer reached us.</summary>
public enum PeerTransport : byte
{
    /// <summary>No TLS.</summary>
    Plaintext,

    /// <summary>TLS without a (verified) client certificate.</summary>
    Tls,

    /// <summary>TLS with a client certificate verified against the mesh trust.</summary>
    MutualTls,
}

/// <summary>A fixed peer identity (set by a TLS stage after its handshake; tests).</summary>
public sealed class PeerIdentityFeature(string? peerIdentity, PeerTransport transport) : IPeerIdentityFeature
{
    public string? PeerIdentity { get; } = peerIdentity;

    public PeerTransport Transport { get; } = transport;
}

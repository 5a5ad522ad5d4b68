using System.Net.Security;
using Proxy.Tls.ClientHello;

namespace Proxy.Tls.Mesh;

/// <summary>What a mesh mTLS connection carries, as its ALPN protocol said.</summary>
public enum MeshInnerProtocol : byte
{
    /// <summary>Not a mesh connection (no mesh ALPN protocol offered or chosen).</summary>
    None,

    /// <summary>HTTP/2 between the sidecars (streams of HTTP/2 clients, and of HTTP/1.1 clients when upgraded).</summary>
    Http2,

    /// <summary>HTTP/1.1 as the client spoke it.</summary>
    Http1,

    /// <summary>Opaque TCP: the client's bytes, unchanged.</summary>
    Tcp,
}

/// <summary>
/// The ALPN protocol names that mark a TLS connection as mesh mTLS between two sidecars of this mesh and say what it
/// carries. The outbound sidecar offers exactly one; the inbound sidecar accepts the three and tells mesh TLS from the
/// app's own TLS (which never offers them) by the ClientHello, before terminating anything.
/// </summary>
public static class MeshAlpn
{
    /// <summary>HTTP/2 inside mesh mTLS.</summary>
    public static readonly SslApplicationProtocol Http2 = new("proxy-mesh/h2");

    /// <summary>HTTP/1.1 inside mesh mTLS.</summary>
    public static readonly SslApplicationProtocol Http1 = new("proxy-mesh/http1.1");

    /// <summary>Opaque TCP inside mesh mTLS.</summary>
    public static readonly SslApplicationProtocol Tcp = new("proxy-mesh/tcp");

    /// <summary>What the inbound side offers: the three markers.</summary>
    public static IReadOnlyList<SslApplicationProtocol> All { get; } = [Http2, Http1, Tcp];

    /// <summary>The ALPN protocol an outbound connection offers to carry <paramref name="inner"/>.</summary>
    public static SslApplicationProtocol For(MeshInnerProtocol inner) => inner switch
    {
        MeshInnerProtocol.Http2 => Http2,
        MeshInnerProtocol.Http1 => Http1,
        MeshInnerProtocol.Tcp => Tcp,
        _ => throw new ArgumentOutOfRangeException(nameof(inner), inner, "not a mesh protocol"),
    };

    /// <summary>The inner protocol named by one ALPN protocol name (None for any other name).</summary>
    public static MeshInnerProtocol Classify(ReadOnlySpan<byte> name)
    {
        if (name.SequenceEqual(Http2.Protocol.Span))
        {
            return MeshInnerProtocol.Http2;
        }

        if (name.SequenceEqual(Http1.Protocol.Span))
        {
            return MeshInnerProtocol.Http1;
        }

        return name.SequenceEqual(Tcp.Protocol.Span) ? MeshInnerProtocol.Tcp : MeshInnerProtocol.None;
    }

    /// <summary>The first mesh protocol a ClientHello's ALPN list offers (None: not a mesh connection).</summary>
    public static MeshInnerProtocol Offered(AlpnEnumerator protocols)
    {
        foreach (var name in protocols)
        {
            if (Classify(name) is var inner and not MeshInnerProtocol.None)
            {
                return inner;
            }
        }

        return MeshInnerProtocol.None;
    }
}

using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Certificates;
using Proxy.Tls.Connections;

namespace Proxy.Tls.Origination;

/// <summary>Settings of a <see cref="TlsUpstreamConnector"/>: how the proxy speaks TLS to a service's endpoints.</summary>
public sealed record TlsClientOptions
{
    /// <summary>
    /// The server name sent as SNI, and the name the endpoint's certificate must carry. Null: no SNI is sent and the
    /// certificate must carry the endpoint's IP address (an IP SAN), as a browser would check an https://10.1.0.4 URL.
    /// </summary>
    public string? ServerName { get; init; }

    /// <summary>ALPN protocols offered (empty: no ALPN extension).</summary>
    public IReadOnlyList<SslApplicationProtocol> ApplicationProtocols { get; init; } = [];

    /// <summary>Roots the endpoint's certificate must chain to (a PEM bundle, custom root trust); null: the system trust store.</summary>
    public X509Certificate2Collection? TrustedAuthorities { get; init; }

    /// <summary>The client certificate presented when the endpoint asks (mutual TLS); null: none.</summary>
    public ICertificateSource? ClientCertificate { get; init; }

    /// <summary>
    /// Mesh mutual TLS: the endpoint's certificate is verified by the mesh's trust (chain to its roots, serverAuth usage,
    /// a SPIFFE ID in the root's trust domain matching <see cref="ExpectedPeer"/>) instead of by name and
    /// <see cref="TrustedAuthorities"/>. A refusal fails the connect with the verification's reason.
    /// </summary>
    public Identity.IMeshTrustSource? PeerTrust { get; init; }

    /// <summary>With <see cref="PeerTrust"/>: the identities the endpoint may prove (null: any identity of the mesh).</summary>
    public Identity.IdentityPattern? ExpectedPeer { get; init; }

    /// <summary>Accept any certificate (no chain, no name check). For tests and migrations only; whoever configures it should log a warning (the sidecar does, once per service).</summary>
    public bool InsecureSkipVerify { get; init; }

    public SslProtocols EnabledProtocols { get; init; } = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>A handshake not finished within this fails the connect (cause tls, "timeout"). Infinite disables.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public TlsPipeOptions Pipes { get; init; } = TlsPipeOptions.Default;
}

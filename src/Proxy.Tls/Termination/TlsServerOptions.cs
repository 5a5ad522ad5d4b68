using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Certificates;
using Proxy.Tls.Connections;

namespace Proxy.Tls.Termination;

/// <summary>Whether a terminating listener asks clients for a certificate.</summary>
public enum ClientCertificateMode
{
    /// <summary>Not requested.</summary>
    None,

    /// <summary>Requested; a client without one is accepted, one with an invalid one refused.</summary>
    Optional,

    /// <summary>Requested; a client without a valid one is refused (mutual TLS).</summary>
    Required,
}

/// <summary>
/// Decides on a client certificate after the chain was built: the certificate (null when the client sent none),
/// the chain and what SslStream found wrong (<see cref="SslPolicyErrors.RemoteCertificateNameMismatch"/> never
/// applies to clients and is masked out). True accepts.
/// </summary>
public delegate bool ClientCertificateValidator(X509Certificate2? certificate, X509Chain? chain, SslPolicyErrors errors);

/// <summary>Settings of a <see cref="TlsTerminator"/>.</summary>
public sealed record TlsServerOptions
{
    /// <summary>The certificate presented to every client (when <see cref="CertificateSelector"/> is null or returns null).</summary>
    public ICertificateSource? Certificate { get; init; }

    /// <summary>Picks the certificate by the client's SNI (null when it sent none); null falls back to <see cref="Certificate"/>.</summary>
    public Func<string?, ICertificateSource?>? CertificateSelector { get; init; }

    /// <summary>ALPN protocols offered, in order of preference: the first the client also offers wins.</summary>
    public IReadOnlyList<SslApplicationProtocol> ApplicationProtocols { get; init; } = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];

    public ClientCertificateMode ClientCertificateMode { get; init; } = ClientCertificateMode.None;

    /// <summary>
    /// Roots a client certificate must chain to (a PEM bundle); null: the system trust store. With a bundle only
    /// these roots count (custom root trust), so a certificate from a public CA is not a mesh identity.
    /// </summary>
    public X509Certificate2Collection? ClientCertificateAuthorities { get; init; }

    /// <summary>
    /// Mesh mutual TLS: a client certificate is required and verified by the mesh's trust (chain to its roots, clientAuth
    /// usage, a SPIFFE ID in the root's trust domain; <see cref="MeshTrust.Verify(X509Certificate2?, X509Certificate2Collection?, PeerRole, IdentityPattern?)"/>),
    /// instead of SslStream's chain and <see cref="ClientCertificateValidator"/>. A refusal is counted with the
    /// verification's code (e.g. <c>untrusted_issuer</c>, <c>expired</c>, <c>no_certificate</c>).
    /// </summary>
    public Identity.IMeshTrustSource? PeerTrust { get; init; }

    /// <summary>Decides instead of the default rule (chain valid, certificate present when required).</summary>
    public ClientCertificateValidator? ClientCertificateValidator { get; init; }

    public SslProtocols EnabledProtocols { get; init; } = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>A handshake not finished within this is abandoned (result timeout). Infinite disables.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public TlsPipeOptions Pipes { get; init; } = TlsPipeOptions.Default;
}

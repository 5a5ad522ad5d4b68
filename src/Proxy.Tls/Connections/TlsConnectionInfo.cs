using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace Proxy.Tls.Connections;

/// <summary>Which side of the handshake the proxy played.</summary>
public enum TlsRole
{
    /// <summary>Termination: a client connected to a listener, the proxy presented the server certificate.</summary>
    Server,

    /// <summary>Origination: the proxy connected to an upstream and presented a client certificate (if any).</summary>
    Client,
}

/// <summary>
/// What a TLS handshake settled, as a feature of the decrypted connection: negotiated ALPN, the server name (SNI),
/// protocol version, cipher suite and the peer's certificate. Also answers Kestrel's
/// <see cref="ITlsConnectionFeature"/> and <see cref="ITlsApplicationProtocolFeature"/>, so code written against
/// those finds the same values.
/// </summary>
public sealed class TlsConnectionInfo : ITlsConnectionFeature, ITlsApplicationProtocolFeature
{
    internal TlsConnectionInfo(SslStream stream, TlsRole role)
    {
        Role = role;
        ApplicationProtocol = stream.NegotiatedApplicationProtocol;
        ServerName = string.IsNullOrEmpty(stream.TargetHostName) ? null : stream.TargetHostName;
        Protocol = stream.SslProtocol;
        CipherSuite = stream.NegotiatedCipherSuite;
        PeerCertificate = stream.RemoteCertificate as X509Certificate2
            ?? (stream.RemoteCertificate is { } other ? new X509Certificate2(other) : null);
    }

    public TlsRole Role { get; }

    /// <summary>The protocol both sides agreed on by ALPN (e.g. h2), or default when none was negotiated.</summary>
    public SslApplicationProtocol ApplicationProtocol { get; }

    /// <summary>True when ALPN chose <c>h2</c>.</summary>
    public bool IsHttp2 => ApplicationProtocol == SslApplicationProtocol.Http2;

    /// <summary>Termination: the SNI the client sent (null when none). Origination: the name the proxy asked for.</summary>
    public string? ServerName { get; }

    public SslProtocols Protocol { get; }

    public TlsCipherSuite CipherSuite { get; }

    /// <summary>The certificate the peer presented: the client's (termination, mTLS) or the upstream's (origination).</summary>
    public X509Certificate2? PeerCertificate { get; }

    // --- Kestrel's feature shapes ---

    X509Certificate2? ITlsConnectionFeature.ClientCertificate
    {
        get => Role == TlsRole.Server ? PeerCertificate : null;
        set => throw new NotSupportedException("The client certificate is what the handshake found.");
    }

    Task<X509Certificate2?> ITlsConnectionFeature.GetClientCertificateAsync(CancellationToken cancellationToken)
        => Task.FromResult(Role == TlsRole.Server ? PeerCertificate : null);

    ReadOnlyMemory<byte> ITlsApplicationProtocolFeature.ApplicationProtocol => ApplicationProtocol.Protocol;
}

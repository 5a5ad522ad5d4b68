using Proxy.Core.Identity;

namespace Proxy.Tls.Identity;

/// <summary>Which side the verified peer is: its certificate must allow that use (extended key usage).</summary>
public enum PeerRole
{
    /// <summary>The peer connected to us (we terminate): its certificate needs clientAuth.</summary>
    Client,

    /// <summary>We connected to the peer (we originate): its certificate needs serverAuth.</summary>
    Server,
}

/// <summary>Why a peer certificate was refused. Stable values (usable as a metric tag via <see cref="PeerVerificationErrors.Code"/>).</summary>
public enum PeerVerificationError
{
    None,

    /// <summary>The peer presented no certificate.</summary>
    NoCertificate,

    /// <summary>The chain does not lead to a mesh root (another CA, or a missing intermediate).</summary>
    UntrustedIssuer,

    /// <summary>The peer's certificate (or one in its chain) is past its notAfter.</summary>
    Expired,

    /// <summary>The peer's certificate (or one in its chain) is before its notBefore.</summary>
    NotYetValid,

    /// <summary>The chain is otherwise invalid (bad signature, a non-CA issuer, a constraint violated).</summary>
    InvalidChain,

    /// <summary>The leaf may not be used this way: wrong extended key usage, no digitalSignature, or it is a CA.</summary>
    WrongKeyUsage,

    /// <summary>The leaf has no SPIFFE ID (no URI SAN, several, or an invalid one).</summary>
    NoIdentity,

    /// <summary>The SPIFFE ID's trust domain is not the one of the root that anchors the chain.</summary>
    WrongTrustDomain,

    /// <summary>A valid identity, but not the one expected.</summary>
    WrongIdentity,
}

/// <summary>Metric/log codes of <see cref="PeerVerificationError"/> (interned constants: no allocation per use).</summary>
public static class PeerVerificationErrors
{
    public static string Code(PeerVerificationError error) => error switch
    {
        PeerVerificationError.None => "ok",
        PeerVerificationError.NoCertificate => "no_certificate",
        PeerVerificationError.UntrustedIssuer => "untrusted_issuer",
        PeerVerificationError.Expired => "expired",
        PeerVerificationError.NotYetValid => "not_yet_valid",
        PeerVerificationError.InvalidChain => "invalid_chain",
        PeerVerificationError.WrongKeyUsage => "wrong_key_usage",
        PeerVerificationError.NoIdentity => "no_identity",
        PeerVerificationError.WrongTrustDomain => "wrong_trust_domain",
        PeerVerificationError.WrongIdentity => "wrong_identity",
        _ => "unknown",
    };
}

/// <summary>
/// The outcome of verifying a peer: its identity when <see cref="IsValid"/>, else the error and a sentence saying
/// what was wrong (naming the certificate's subject and the expectation).
/// </summary>
public readonly record struct PeerVerification(PeerVerificationError Error, SpiffeId? Identity, string? Reason)
{
    public bool IsValid => Error == PeerVerificationError.None;

    public static PeerVerification Success(SpiffeId identity) => new(PeerVerificationError.None, identity, null);

    public static PeerVerification Failure(PeerVerificationError error, string reason, SpiffeId? identity = null) => new(error, identity, reason);

    /// <summary>
    /// The connection feature a terminating TLS stage sets after a successful mutual-TLS handshake (call only when
    /// <see cref="IsValid"/>): the verified SPIFFE ID, transport <see cref="PeerTransport.MutualTls"/>.
    /// </summary>
    public PeerIdentityFeature ToPeerIdentityFeature()
        => IsValid ? new PeerIdentityFeature(Identity!.Uri, PeerTransport.MutualTls) : throw new InvalidOperationException($"the peer was not verified: {this}");

    public override string ToString() => IsValid ? $"ok: {Identity}" : $"{PeerVerificationErrors.Code(Error)}: {Reason}";
}

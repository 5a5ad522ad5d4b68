using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Certificates;

namespace Proxy.Tls.Identity;

/// <summary>
/// The mesh's trust anchors (root CA certificates) and the check a sidecar applies to a peer's certificate:
/// <list type="number">
/// <item>a certificate was presented;</item>
/// <item>the leaf is within its validity period (time from the injected <see cref="TimeProvider"/>);</item>
/// <item>the chain (leaf + what the peer sent) builds to one of the roots: <see cref="X509Chain"/> with
/// <see cref="X509ChainTrustMode.CustomRootTrust"/>, no revocation check, no downloads, at the same time;</item>
/// <item>the leaf may be used by the peer's role: extended key usage clientAuth or serverAuth (an absent EKU allows
/// all, as RFC 5280 says), digitalSignature when key usage is present, and not a CA;</item>
/// <item>the leaf has a SPIFFE ID (<see cref="CertificateIdentity"/>) in the trust domain of the anchoring root (when
/// that root declares one);</item>
/// <item>the ID matches the expected <see cref="IdentityPattern"/>, if any.</item>
/// </list>
/// Verification is a pure function of the certificates, the roots and the time, so it runs inside SslStream's
/// <see cref="RemoteCertificateValidationCallback"/> (<see cref="CreateValidationCallback"/>) or anywhere else. Thread-safe.
/// </summary>
public sealed class MeshTrust : IDisposable
{
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    private readonly X509Certificate2Collection _roots;
    private readonly string?[] _rootTrustDomains;
    private readonly TimeProvider _time;
    private readonly bool _ownsRoots;

    /// <summary>Trusts <paramref name="roots"/> (CA certificates; the collection is copied).</summary>
    /// <exception cref="ArgumentException">No roots, or a root that is not a CA certificate.</exception>
    public MeshTrust(X509Certificate2Collection roots, TimeProvider? time = null)
        : this(roots, time, ownsRoots: false)
    {
    }

    private MeshTrust(X509Certificate2Collection roots, TimeProvider? time, bool ownsRoots)
    {
        ArgumentNullException.ThrowIfNull(roots);
        if (roots.Count == 0)
        {
            throw new ArgumentException("the mesh trust bundle holds no root certificate", nameof(roots));
        }

        _roots = [];
        _rootTrustDomains = new string?[roots.Count];
        for (var i = 0; i < roots.Count; i++)
        {
            var root = roots[i];
            if (root.Extensions[BasicConstraintsOid] is not X509BasicConstraintsExtension { CertificateAuthority: true })
            {
                throw new ArgumentException($"the trust bundle certificate {root.Subject} is not a CA certificate", nameof(roots));
            }

            _roots.Add(root);
            _rootTrustDomains[i] = CertificateIdentity.GetTrustDomainOrNull(root);
        }

        _time = time ?? TimeProvider.System;
        _ownsRoots = ownsRoots;
    }

    private const string BasicConstraintsOid = "2.5.29.19";

    /// <summary>The root certificates (do not modify).</summary>
    public X509Certificate2Collection Roots => _roots;

    /// <summary>The trust domains the roots declare (see <see cref="CertificateIdentity.GetTrustDomainOrNull"/>), without duplicates.</summary>
    public IReadOnlyList<string> TrustDomains => _rootTrustDomains.OfType<string>().Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>Trusts the CA certificates in the PEM file <paramref name="path"/> (a bundle of one or more).</summary>
    /// <exception cref="CertificateLoadException">The file cannot be read or holds no CA certificate.</exception>
    public static MeshTrust FromPemFile(string path, TimeProvider? time = null)
    {
        string pem;
        try
        {
            pem = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the trust bundle {path}: {e.Message}", e);
        }

        return FromPem(pem, time, path);
    }

    /// <summary>Trusts the CA certificates in <paramref name="pem"/>.</summary>
    /// <exception cref="CertificateLoadException">No certificate in it, or one that is not a CA.</exception>
    public static MeshTrust FromPem(string pem, TimeProvider? time = null, string source = "the trust bundle")
    {
        X509Certificate2Collection roots = [];
        try
        {
            roots.ImportFromPem(pem);
        }
        catch (CryptographicException e)
        {
            throw new CertificateLoadException($"{source}: not a PEM certificate bundle: {e.Message}", e);
        }

        if (roots.Count == 0)
        {
            throw new CertificateLoadException($"{source} holds no PEM certificate");
        }

        try
        {
            return new MeshTrust(roots, time, ownsRoots: true);
        }
        catch (ArgumentException e)
        {
            throw new CertificateLoadException($"{source}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Verifies what SslStream hands its validation callback: <paramref name="certificate"/> is the peer's leaf and
    /// <paramref name="chain"/>'s <see cref="X509ChainPolicy.ExtraStore"/> the other certificates the peer sent.
    /// SslStream's own policy errors are ignored: the mesh decides by its roots and SPIFFE IDs, not host names.
    /// </summary>
    public PeerVerification Verify(X509Certificate? certificate, X509Chain? chain, PeerRole role, IdentityPattern? expected = null)
    {
        if (certificate is null)
        {
            return PeerVerification.Failure(PeerVerificationError.NoCertificate, "the peer presented no certificate");
        }

        // SslStream passes an X509Certificate2; wrap defensively in case a caller passes the base type.
        var leaf = certificate as X509Certificate2;
        var owned = leaf is null;
        leaf ??= new X509Certificate2(certificate);
        try
        {
            return Verify(leaf, chain?.ChainPolicy.ExtraStore, role, expected);
        }
        finally
        {
            if (owned)
            {
                leaf.Dispose();
            }
        }
    }

    /// <summary>Verifies <paramref name="leaf"/> with the intermediates the peer sent (<paramref name="presented"/>, may be null).</summary>
    public PeerVerification Verify(X509Certificate2? leaf, X509Certificate2Collection? presented, PeerRole role, IdentityPattern? expected = null)
    {
        if (leaf is null)
        {
            return PeerVerification.Failure(PeerVerificationError.NoCertificate, "the peer presented no certificate");
        }

        var now = _time.GetUtcNow().UtcDateTime;
        if (CheckValidity(leaf, now, "the peer certificate") is { } timeFailure)
        {
            return timeFailure;
        }

        var anchor = BuildChain(leaf, presented, now, out var chainFailure);
        if (chainFailure is { } failure)
        {
            return failure;
        }

        if (CheckUsage(leaf, role) is { } usageFailure)
        {
            return usageFailure;
        }

        if (!CertificateIdentity.TryGetSpiffeId(leaf, out var id, out var error))
        {
            return PeerVerification.Failure(PeerVerificationError.NoIdentity, $"the peer certificate {Describe(leaf)}: {error}");
        }

        if (_rootTrustDomains[anchor] is { } trustDomain && !string.Equals(trustDomain, id.TrustDomain, StringComparison.Ordinal))
        {
            return PeerVerification.Failure(
                PeerVerificationError.WrongTrustDomain,
                $"the peer identity {id} is not in trust domain {trustDomain}, the one of the root {Describe(_roots[anchor])} that issued it",
                id);
        }

        if (expected is not null && !expected.Matches(id))
        {
            return PeerVerification.Failure(PeerVerificationError.WrongIdentity, $"the peer identity {id} is not {expected}", id);
        }

        return PeerVerification.Success(id);
    }

    /// <summary>
    /// A callback for <see cref="SslServerAuthenticationOptions.RemoteCertificateValidationCallback"/> (role
    /// <see cref="PeerRole.Client"/>) or the client options (role <see cref="PeerRole.Server"/>). <paramref name="observe"/>
    /// gets every result (the peer identity for the connection, the reason for logs and metrics).
    /// </summary>
    public RemoteCertificateValidationCallback CreateValidationCallback(PeerRole role, IdentityPattern? expected = null, Action<PeerVerification>? observe = null)
        => (_, certificate, chain, _) =>
        {
            var result = Verify(certificate, chain, role, expected);
            observe?.Invoke(result);
            return result.IsValid;
        };

    private static PeerVerification? CheckValidity(X509Certificate2 certificate, DateTime nowUtc, string what)
    {
        var notBefore = certificate.NotBefore.ToUniversalTime();
        var notAfter = certificate.NotAfter.ToUniversalTime();
        if (nowUtc < notBefore)
        {
            return PeerVerification.Failure(
                PeerVerificationError.NotYetValid,
                $"{what} {Describe(certificate)} is not valid before {notBefore:yyyy-MM-ddTHH:mm:ssZ} (now {nowUtc:yyyy-MM-ddTHH:mm:ssZ})");
        }

        if (nowUtc > notAfter)
        {
            return PeerVerification.Failure(
                PeerVerificationError.Expired,
                $"{what} {Describe(certificate)} expired at {notAfter:yyyy-MM-ddTHH:mm:ssZ} (now {nowUtc:yyyy-MM-ddTHH:mm:ssZ})");
        }

        return null;
    }

    /// <summary>Builds the chain; returns the index of the anchoring root, or sets <paramref name="failure"/>.</summary>
    private int BuildChain(X509Certificate2 leaf, X509Certificate2Collection? presented, DateTime nowUtc, out PeerVerification? failure)
    {
        failure = null;
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(_roots);
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = nowUtc;
        policy.VerificationTimeIgnored = false;
        if (presented is not null)
        {
            foreach (var extra in presented)
            {
                // The peer may send its leaf again or a copy of the root: harmless either way.
                policy.ExtraStore.Add(extra);
            }
        }

        try
        {
            var built = chain.Build(leaf);
            var elements = chain.ChainElements;
            var anchor = -1;
            if (elements.Count > 0)
            {
                var top = elements[^1].Certificate;
                for (var i = 0; i < _roots.Count; i++)
                {
                    if (top.RawDataMemory.Span.SequenceEqual(_roots[i].RawDataMemory.Span))
                    {
                        anchor = i;
                        break;
                    }
                }
            }

            if (built && anchor >= 0)
            {
                return anchor;
            }

            failure = DescribeChainFailure(leaf, chain, anchor, nowUtc);
            return -1;
        }
        finally
        {
            foreach (var element in chain.ChainElements)
            {
                element.Certificate.Dispose();
            }
        }
    }

    private static PeerVerification DescribeChainFailure(X509Certificate2 leaf, X509Chain chain, int anchor, DateTime nowUtc)
    {
        var flags = X509ChainStatusFlags.NoError;
        foreach (var status in chain.ChainStatus)
        {
            flags |= status.Status;
        }

        // A CA certificate outside its validity period: say which one.
        if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            var elements = chain.ChainElements;
            for (var i = 1; i < elements.Count; i++)
            {
                if (CheckValidity(elements[i].Certificate, nowUtc, "the issuing CA certificate") is { } timeFailure)
                {
                    return timeFailure;
                }
            }
        }

        if (anchor < 0 || (flags & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0)
        {
            return PeerVerification.Failure(
                PeerVerificationError.UntrustedIssuer,
                $"the peer certificate {Describe(leaf)} (issuer {leaf.Issuer}) does not chain to a mesh root");
        }

        return PeerVerification.Failure(
            PeerVerificationError.InvalidChain,
            $"the peer certificate {Describe(leaf)} has an invalid chain: {flags}");
    }

    private static PeerVerification? CheckUsage(X509Certificate2 leaf, PeerRole role)
    {
        foreach (var extension in leaf.Extensions)
        {
            switch (extension)
            {
                case X509BasicConstraintsExtension { CertificateAuthority: true }:
                    return PeerVerification.Failure(PeerVerificationError.WrongKeyUsage, $"the peer certificate {Describe(leaf)} is a CA certificate, not a workload certificate");
                case X509KeyUsageExtension keyUsage when (keyUsage.KeyUsages & X509KeyUsageFlags.DigitalSignature) == 0:
                    return PeerVerification.Failure(PeerVerificationError.WrongKeyUsage, $"the peer certificate {Describe(leaf)} does not allow digitalSignature (key usage {keyUsage.KeyUsages})");
                case X509EnhancedKeyUsageExtension eku:
                    var required = role == PeerRole.Client ? ClientAuthOid : ServerAuthOid;
                    var found = false;
                    foreach (var oid in eku.EnhancedKeyUsages)
                    {
                        found |= oid.Value == required;
                    }

                    if (!found)
                    {
                        var name = role == PeerRole.Client ? "clientAuth" : "serverAuth";
                        return PeerVerification.Failure(
                            PeerVerificationError.WrongKeyUsage,
                            $"the peer certificate {Describe(leaf)} is not for {name} (its extended key usage lacks {required}), needed for a TLS {(role == PeerRole.Client ? "client" : "server")}");
                    }

                    break;
            }
        }

        return null;
    }

    /// <summary>Names a certificate in messages: its subject, or (workload certificates often have none) its serial number.</summary>
    internal static string Describe(X509Certificate2 certificate)
        => certificate.Subject.Length > 0 ? $"\"{certificate.Subject}\"" : $"(serial {certificate.SerialNumber})";

    /// <summary>Disposes the root certificates when this instance loaded them (<see cref="FromPem"/>, <see cref="FromPemFile"/>).</summary>
    public void Dispose()
    {
        if (!_ownsRoots)
        {
            return;
        }

        foreach (var root in _roots)
        {
            root.Dispose();
        }
    }
}

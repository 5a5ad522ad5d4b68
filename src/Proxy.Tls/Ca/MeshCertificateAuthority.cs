using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;

namespace Proxy.Tls.Ca;

/// <summary>
/// The mesh certificate authority: a root CA certificate and key that issue short-lived workload certificates
/// (X.509 SVIDs). All cryptography is .NET's (<see cref="CertificateRequest"/>, <see cref="ECDsa"/>, P-256, SHA-256).
/// <list type="bullet">
/// <item>root (<see cref="CreateRoot"/>): subject CN "&lt;trust-domain&gt; mesh root", URI SAN <c>spiffe://&lt;trust-domain&gt;</c>,
/// basic constraints CA (critical), key usage keyCertSign + cRLSign (critical), subject key identifier;</item>
/// <item>workload (<see cref="Issue"/>): empty subject, critical SAN with the SPIFFE ID as the only URI (plus optional DNS
/// names), basic constraints not-CA, key usage digitalSignature, EKU serverAuth + clientAuth, subject and authority
/// key identifiers, a random 128-bit serial, never valid past the CA.</item>
/// </list>
/// Both are back-dated by <see cref="ClockSkewAllowance"/> so a peer whose clock is slightly behind accepts them.
/// </summary>
public sealed class MeshCertificateAuthority : IDisposable
{
    /// <summary>How far notBefore is set before "now".</summary>
    public static readonly TimeSpan ClockSkewAllowance = TimeSpan.FromMinutes(5);

    private MeshCertificateAuthority(X509Certificate2 certificate, X509Certificate2Collection chain, string trustDomain)
    {
        Certificate = certificate;
        Chain = chain;
        TrustDomain = trustDomain;
    }

    /// <summary>The CA certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Certificates above <see cref="Certificate"/> (empty for a root; the rest of the CA file for an intermediate).</summary>
    public X509Certificate2Collection Chain { get; }

    /// <summary>The trust domain this CA signs identities for.</summary>
    public string TrustDomain { get; }

    /// <summary>Creates a new self-signed root for <paramref name="trustDomain"/>, valid for <paramref name="lifetime"/>.</summary>
    /// <exception cref="FormatException">Not a valid trust domain name.</exception>
    public static MeshCertificateAuthority CreateRoot(string trustDomain, TimeSpan lifetime, TimeProvider? time = null)
    {
        if (SpiffeId.ValidateTrustDomain(trustDomain) is { } error)
        {
            throw new FormatException(error);
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(lifetime, TimeSpan.Zero);
        var now = (time ?? TimeProvider.System).GetUtcNow();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(
            CommonName(trustDomain + CertificateIdentity.MeshRootNameSuffix),
            key,
            HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(SubjectAlternativeName(SpiffeId.Prefix + trustDomain, [], critical: false));

        var certificate = request.CreateSelfSigned(now - ClockSkewAllowance, now + lifetime);
        return new MeshCertificateAuthority(certificate, [], trustDomain);
    }

    /// <summary>
    /// Loads a CA from PEM files: <paramref name="certificatePath"/> holds the CA certificate first (then, for an
    /// intermediate CA, the certificates above it), <paramref name="keyPath"/> its unencrypted private key.
    /// </summary>
    /// <exception cref="CertificateLoadException">A file cannot be read, is not a CA, or declares no trust domain.</exception>
    public static MeshCertificateAuthority Load(string certificatePath, string keyPath)
    {
        X509Certificate2Collection all = [];
        try
        {
            all.ImportFromPemFile(certificatePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new CertificateLoadException($"cannot read the CA certificate {certificatePath}: {e.Message}", e);
        }

        if (all.Count == 0)
        {
            throw new CertificateLoadException($"the CA certificate file {certificatePath} holds no PEM certificate");
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new CertificateLoadException($"cannot pair the CA certificate {certificatePath} with the key {keyPath}: {e.Message}", e);
        }

        if (certificate.Extensions["2.5.29.19"] is not X509BasicConstraintsExtension { CertificateAuthority: true })
        {
            throw new CertificateLoadException($"{certificatePath}: {MeshTrust.Describe(certificate)} is not a CA certificate");
        }

        if (certificate.GetECDsaPrivateKey() is null && certificate.GetRSAPrivateKey() is null)
        {
            throw new CertificateLoadException($"{keyPath}: the CA key is neither ECDSA nor RSA");
        }

        var trustDomain = CertificateIdentity.GetTrustDomainOrNull(certificate)
            ?? throw new CertificateLoadException(
                $"{certificatePath}: cannot tell the CA's trust domain (no spiffe://<trust-domain> URI SAN and no subject CN \"<trust-domain>{CertificateIdentity.MeshRootNameSuffix}\")");

        X509Certificate2Collection chain = [];
        for (var i = 1; i < all.Count; i++)
        {
            chain.Add(all[i]);
        }

        return new MeshCertificateAuthority(certificate, chain, trustDomain);
    }

    /// <summary>
    /// Issues a workload certificate for <paramref name="identity"/> (with a new P-256 key) valid for
    /// <paramref name="lifetime"/>, cut short at the CA's own notAfter. The result has its private key.
    /// </summary>
    /// <exception cref="ArgumentException">The identity is in another trust domain, or a DNS name is not valid.</exception>
    public X509Certificate2 Issue(SpiffeId identity, IReadOnlyList<string> dnsNames, TimeSpan lifetime, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(identity);
        if (!string.Equals(identity.TrustDomain, TrustDomain, StringComparison.Ordinal))
        {
            throw new ArgumentException($"the identity {identity} is in trust domain {identity.TrustDomain}, but this CA signs for {TrustDomain}", nameof(identity));
        }

        if (identity.IsTrustDomainId)
        {
            throw new ArgumentException($"{identity} is a trust domain's ID; a workload identity has a path (e.g. /ns/<ns>/sa/<sa>)", nameof(identity));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(lifetime, TimeSpan.Zero);
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var notBefore = now - ClockSkewAllowance;
        var caNotBefore = new DateTimeOffset(Certificate.NotBefore.ToUniversalTime());
        var caNotAfter = new DateTimeOffset(Certificate.NotAfter.ToUniversalTime());
        if (notBefore < caNotBefore)
        {
            notBefore = caNotBefore;
        }

        var notAfter = now + lifetime;
        if (notAfter > caNotAfter)
        {
            notAfter = caNotAfter;
        }

        if (notAfter <= notBefore)
        {
            throw new ArgumentException($"the CA {MeshTrust.Describe(Certificate)} is not valid now (valid {caNotBefore:u} to {caNotAfter:u})", nameof(time));
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256);
        foreach (var name in dnsNames)
        {
            if (Uri.CheckHostName(name.StartsWith("*.", StringComparison.Ordinal) ? name[2..] : name) != UriHostNameType.Dns || name.Length > 253 || !Ascii.IsValid(name))
            {
                throw new ArgumentException($"\"{name}\" is not a DNS name", nameof(dnsNames));
            }
        }

        // An empty subject needs a critical SAN (RFC 5280 4.2.1.6).
        request.CertificateExtensions.Add(SubjectAlternativeName(identity.Uri, dnsNames, critical: true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1", "serverAuth"), new Oid("1.3.6.1.5.5.7.3.2", "clientAuth")],
            critical: false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));

        using var issued = request.Create(Certificate, notBefore, notAfter, NewSerialNumber());
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>A random positive 128-bit serial number (RFC 5280: at most 20 octets, positive).</summary>
    private static byte[] NewSerialNumber()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x40); // positive, and no leading zero octet to strip
        return serial;
    }

    /// <summary>The PEM of the CA certificate followed by its <see cref="Chain"/>.</summary>
    public string CertificateChainPem()
    {
        var builder = new StringBuilder(Certificate.ExportCertificatePem()).Append('\n');
        foreach (var certificate in Chain)
        {
            builder.Append(certificate.ExportCertificatePem()).Append('\n');
        }

        return builder.ToString();
    }

    /// <summary>PEM "PRIVATE KEY" (PKCS#8, unencrypted) of a certificate's ECDSA or RSA key.</summary>
    public static string PrivateKeyPem(X509Certificate2 certificate)
    {
        using AsymmetricAlgorithm key = (AsymmetricAlgorithm?)certificate.GetECDsaPrivateKey() ?? certificate.GetRSAPrivateKey()
            ?? throw new ArgumentException($"{MeshTrust.Describe(certificate)} has no ECDSA or RSA private key", nameof(certificate));
        return key.ExportPkcs8PrivateKeyPem() + "\n";
    }

    /// <summary>The PEM a workload's tls.crt holds: the issued leaf, then the CA and its chain.</summary>
    public string WorkloadChainPem(X509Certificate2 leaf) => leaf.ExportCertificatePem() + "\n" + CertificateChainPem();

    /// <summary>
    /// The SAN extension with the URI written exactly as given. (SubjectAlternativeNameBuilder.AddUri takes a
    /// <see cref="Uri"/>, whose text gains a trailing '/' for a bare authority: <c>spiffe://td/</c> is not a valid SPIFFE ID.)
    /// <c>GeneralNames ::= SEQUENCE OF GeneralName</c>; <c>dNSName [2] IA5String</c>, <c>uniformResourceIdentifier [6] IA5String</c>.
    /// </summary>
    private static X509Extension SubjectAlternativeName(string uri, IReadOnlyList<string> dnsNames, bool critical)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteCharacterString(UniversalTagNumber.IA5String, uri, new Asn1Tag(TagClass.ContextSpecific, 6));
            foreach (var name in dnsNames)
            {
                writer.WriteCharacterString(UniversalTagNumber.IA5String, name, new Asn1Tag(TagClass.ContextSpecific, 2));
            }
        }

        return new X509Extension(CertificateIdentity.SubjectAlternativeNameOid, writer.Encode(), critical);
    }

    private static X500DistinguishedName CommonName(string commonName)
    {
        var builder = new X500DistinguishedNameBuilder();
        builder.AddCommonName(commonName);
        return builder.Build();
    }

    public void Dispose()
    {
        Certificate.Dispose();
        foreach (var certificate in Chain)
        {
            certificate.Dispose();
        }
    }
}

using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Ca;
using Proxy.Tls.Identity;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>Certificates for tests: mesh CAs and hand-made leaves (bad dates, wrong usages, odd SANs) via CertificateRequest.</summary>
internal static class TestCertificates
{
    public static MeshCertificateAuthority NewCa(string trustDomain = "cluster.local")
        => MeshCertificateAuthority.CreateRoot(trustDomain, TimeSpan.FromDays(365));

    public static X509Certificate2 Issue(MeshCertificateAuthority ca, string identity, TimeSpan? lifetime = null)
        => ca.Issue(SpiffeId.Parse(identity), [], lifetime ?? TimeSpan.FromHours(24));

    /// <summary>
    /// An intermediate CA under <paramref name="root"/> for the same trust domain (URI SAN <c>spiffe://td</c> written
    /// exactly: System.Uri would add a trailing '/'), loaded back through <see cref="MeshCertificateAuthority.Load"/>.
    /// </summary>
    public static MeshCertificateAuthority NewIntermediate(MeshCertificateAuthority root, string dir)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={root.TrustDomain} intermediate", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var san = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.DER);
        using (san.PushSequence())
        {
            san.WriteCharacterString(System.Formats.Asn1.UniversalTagNumber.IA5String, "spiffe://" + root.TrustDomain, new System.Formats.Asn1.Asn1Tag(System.Formats.Asn1.TagClass.ContextSpecific, 6));
        }

        request.CertificateExtensions.Add(new X509Extension("2.5.29.17", san.Encode(), false));
        var now = DateTimeOffset.UtcNow;
        using var intermediate = request.Create(root.Certificate, now.AddMinutes(-1), now.AddDays(30), [0x42, 0x01]);
        var certPath = Path.Combine(dir, "intermediate.crt");
        var keyPath = Path.Combine(dir, "intermediate.key");
        File.WriteAllText(certPath, intermediate.ExportCertificatePem() + "\n" + root.Certificate.ExportCertificatePem() + "\n");
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return MeshCertificateAuthority.Load(certPath, keyPath);
    }

    /// <summary>A leaf signed by <paramref name="ca"/> with exactly the given dates, URIs and usages.</summary>
    public static X509Certificate2 Custom(
        MeshCertificateAuthority ca,
        string[] uris,
        DateTimeOffset? notBefore = null,
        DateTimeOffset? notAfter = null,
        string[]? ekus = null,
        X509KeyUsageFlags keyUsage = X509KeyUsageFlags.DigitalSignature,
        bool isCa = false,
        string subject = "")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(subject), key, HashAlgorithmName.SHA256);
        if (uris.Length > 0)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var uri in uris)
            {
                san.AddUri(new Uri(uri));
            }

            request.CertificateExtensions.Add(san.Build(critical: subject.Length == 0));
        }

        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(keyUsage, true));
        var ekuCollection = new OidCollection();
        foreach (var eku in ekus ?? ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
        {
            ekuCollection.Add(new Oid(eku));
        }

        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(ekuCollection, false));
        var now = DateTimeOffset.UtcNow;
        using var issued = request.Create(ca.Certificate, notBefore ?? now.AddMinutes(-5), notAfter ?? now.AddHours(1), RandomNumberGenerator.GetBytes(16).Select((b, i) => i == 0 ? (byte)(b & 0x7F | 0x40) : b).ToArray());
        return issued.CopyWithPrivateKey(key);
    }
}

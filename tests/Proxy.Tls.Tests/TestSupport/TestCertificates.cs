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

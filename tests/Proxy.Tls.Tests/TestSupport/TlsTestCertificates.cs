using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>
/// A throw-away CA and leaves signed by it, made with CertificateRequest (ECDSA P-256, valid from an hour ago for a
/// day). Leaves carry SANs (DNS names and IP addresses). <see cref="WritePem"/> puts one in temp files for configs
/// that need paths. Shared with Proxy.Sidecar.Tests (linked source).
/// </summary>
public sealed class TlsTestCertificates : IDisposable
{
    private readonly List<string> _files = [];

    public TlsTestCertificates(string caName = "Proxy Test CA")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={caName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        Ca = request.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));
    }

    /// <summary>The CA certificate, with its private key.</summary>
    public X509Certificate2 Ca { get; }

    /// <summary>A server leaf for localhost and 127.0.0.1 (and any extra names given).</summary>
    public X509Certificate2 Server(params string[] extraNames) => Leaf("localhost", server: true, ["localhost", .. extraNames], [IPAddress.Loopback]);

    /// <summary>A leaf whose SANs are only <paramref name="dnsNames"/> (no IP): for name-mismatch tests.</summary>
    public X509Certificate2 ServerFor(params string[] dnsNames) => Leaf(dnsNames[0], server: true, dnsNames, []);

    /// <summary>A client leaf (clientAuth EKU).</summary>
    public X509Certificate2 Client(string name = "client") => Leaf(name, server: false, [], []);

    public X509Certificate2 Leaf(string commonName, bool server, IReadOnlyList<string> dnsNames, IReadOnlyList<IPAddress> ips)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [server ? new Oid("1.3.6.1.5.5.7.3.1") : new Oid("1.3.6.1.5.5.7.3.2")], false));
        if (dnsNames.Count > 0 || ips.Count > 0)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var name in dnsNames)
            {
                san.AddDnsName(name);
            }

            foreach (var ip in ips)
            {
                san.AddIpAddress(ip);
            }

            request.CertificateExtensions.Add(san.Build());
        }

        var now = DateTimeOffset.UtcNow;
        var serial = new byte[12];
        RandomNumberGenerator.Fill(serial);
        using var signed = request.Create(Ca, now.AddMinutes(-30), now.AddHours(12), serial);
        return signed.CopyWithPrivateKey(key);
    }

    /// <summary>Writes the certificate and its key to temp PEM files (deleted on dispose).</summary>
    public (string CertificatePath, string KeyPath) WritePem(X509Certificate2 certificate)
    {
        var cert = TempFile(certificate.ExportCertificatePem());
        var key = TempFile(certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        return (cert, key);
    }

    /// <summary>The CA certificate as a PEM bundle file.</summary>
    public string WriteCaPem() => TempFile(Ca.ExportCertificatePem());

    public string TempFile(string content)
    {
        var path = Path.Combine(Path.GetTempPath(), $"proxy-tls-test-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, content);
        _files.Add(path);
        return path;
    }

    public void Dispose()
    {
        foreach (var f in _files)
        {
            try
            {
                File.Delete(f);
            }
            catch (IOException)
            {
            }
        }

        Ca.Dispose();
    }
}

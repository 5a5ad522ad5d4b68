using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Certificates;

/// <summary>PEM bundles of trusted root certificates (a listener's client CA, a service's upstream CA).</summary>
public static class TrustBundle
{
    /// <exception cref="CertificateLoadException">The file cannot be read or holds no PEM certificate.</exception>
    public static X509Certificate2Collection Load(string path)
    {
        var bundle = new X509Certificate2Collection();
        try
        {
            bundle.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new CertificateLoadException($"cannot read the CA bundle {path}: {e.Message}", e);
        }

        if (bundle.Count == 0)
        {
            throw new CertificateLoadException($"the CA bundle {path} holds no PEM certificate");
        }

        return bundle;
    }
}

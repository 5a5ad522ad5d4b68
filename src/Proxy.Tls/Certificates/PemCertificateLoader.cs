using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Certificates;

/// <summary>Reads a certificate chain and its private key from PEM (files or text), with errors that name the files.</summary>
internal static class PemCertificateLoader
{
    /// <summary>The leaf (with its key) and the certificates after it in the certificate file.</summary>
    /// <exception cref="CertificateLoadException">A file is missing, unreadable or does not hold what it should.</exception>
    public static (X509Certificate2 Leaf, X509Certificate2Collection Intermediates) LoadFiles(string certificatePath, string keyPath)
    {
        string certificatePem;
        string keyPem;
        try
        {
            certificatePem = File.ReadAllText(certificatePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the certificate file {certificatePath}: {e.Message}", e);
        }

        try
        {
            keyPem = File.ReadAllText(keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the key file {keyPath}: {e.Message}", e);
        }

        return Load(certificatePem, keyPem, certificatePath, keyPath);
    }

    /// <summary>Parses PEM text; the paths only name the sources in errors.</summary>
    /// <exception cref="CertificateLoadException">No certificate, a malformed one, or a key that is not the leaf's.</exception>
    public static (X509Certificate2 Leaf, X509Certificate2Collection Intermediates) Load(string certificatePem, string keyPem, string certificatePath, string keyPath)
    {
        X509Certificate2Collection all = [];
        try
        {
            all.ImportFromPem(certificatePem);
        }
        catch (CryptographicException e)
        {
            throw new CertificateLoadException($"cannot read the certificate file {certificatePath}: {e.Message}", e);
        }

        if (all.Count == 0)
        {
            throw new CertificateLoadException($"the certificate file {certificatePath} holds no PEM certificate");
        }

        X509Certificate2 leaf;
        try
        {
            leaf = X509Certificate2.CreateFromPem(certificatePem, keyPem);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            foreach (var certificate in all)
            {
                certificate.Dispose();
            }

            throw new CertificateLoadException($"cannot pair the certificate {certificatePath} with the key {keyPath}: {e.Message}", e);
        }

        all[0].Dispose();
        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < all.Count; i++)
        {
            intermediates.Add(all[i]);
        }

        return (leaf, intermediates);
    }
}

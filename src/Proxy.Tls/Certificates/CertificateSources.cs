using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Certificates;

/// <summary>Where certificate sources come from. The single place config wiring asks for one.</summary>
public static class CertificateSources
{
    /// <summary>
    /// The certificate in <paramref name="certificatePath"/> (PEM: the leaf first, then any intermediates) with the
    /// private key in <paramref name="keyPath"/> (PEM, unencrypted PKCS#8, PKCS#1 or SEC1).
    /// </summary>
    /// <exception cref="CertificateLoadException">A file is missing, unreadable or does not hold what it should.</exception>
    public static ICertificateSource FromPemFiles(string certificatePath, string keyPath)
        => StaticCertificateSource.Load(certificatePath, keyPath);

    /// <summary>A fixed certificate (tests, embedded defaults). The certificate must have its private key.</summary>
    public static ICertificateSource Fixed(X509Certificate2 certificate, X509Certificate2Collection? intermediates = null)
        => new StaticCertificateSource(certificate, intermediates);
}

/// <summary>A certificate or key file could not be used; the message names the file and the cause.</summary>
public sealed class CertificateLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A source that never changes.</summary>
internal sealed class StaticCertificateSource : ICertificateSource
{
    public StaticCertificateSource(X509Certificate2 certificate, X509Certificate2Collection? intermediates)
    {
        if (!certificate.HasPrivateKey)
        {
            throw new CertificateLoadException($"the certificate {certificate.Subject} has no private key");
        }

        Current = SslStreamCertificateContext.Create(certificate, intermediates ?? [], offline: true);
        NotAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
    }

    public SslStreamCertificateContext Current { get; }

    public DateTimeOffset NotAfter { get; }

    public static StaticCertificateSource Load(string certificatePath, string keyPath)
    {
        X509Certificate2Collection all = [];
        try
        {
            all.ImportFromPemFile(certificatePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
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
            leaf = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new CertificateLoadException($"cannot pair the certificate {certificatePath} with the key {keyPath}: {e.Message}", e);
        }

        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < all.Count; i++)
        {
            intermediates.Add(all[i]);
        }

        return new StaticCertificateSource(leaf, intermediates);
    }
}

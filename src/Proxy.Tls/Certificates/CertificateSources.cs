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

    /// <summary>
    /// Like <see cref="FromPemFiles"/>, but the files are watched and reloaded when they change (see
    /// <see cref="FileCertificateSource"/>). Dispose the result to stop watching.
    /// </summary>
    /// <exception cref="CertificateLoadException">The files cannot be used now.</exception>
    public static FileCertificateSource Watch(
        string certificatePath,
        string keyPath,
        FileCertificateSourceOptions? options = null,
        Microsoft.Extensions.Logging.ILogger? logger = null,
        Proxy.Core.Metrics.ProxyMetrics? metrics = null,
        TimeProvider? time = null)
        => new(certificatePath, keyPath, options, logger, metrics, time);

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
        var (leaf, intermediates) = PemCertificateLoader.LoadFiles(certificatePath, keyPath);
        return new StaticCertificateSource(leaf, intermediates);
    }
}

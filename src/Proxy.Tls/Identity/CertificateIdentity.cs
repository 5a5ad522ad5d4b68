using System.Diagnostics.CodeAnalysis;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Identity;

/// <summary>
/// Reads the workload identity from a certificate: the SPIFFE ID in its URI subject alternative name. Following the
/// X.509 SVID specification a certificate has an identity only when it has exactly one URI SAN and that URI is a valid
/// SPIFFE ID; none, two, or a non-SPIFFE URI mean no identity (DNS and IP SANs are ignored).
/// </summary>
public static class CertificateIdentity
{
    /// <summary>OID of the subject alternative name extension.</summary>
    public const string SubjectAlternativeNameOid = "2.5.29.17";

    /// <summary>Gets the SPIFFE ID of <paramref name="certificate"/>; on failure <paramref name="error"/> says why there is none.</summary>
    public static bool TryGetSpiffeId(X509Certificate2 certificate, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        id = null;
        string? uri = null;
        var count = 0;
        try
        {
            foreach (var extension in certificate.Extensions)
            {
                if (extension.Oid?.Value == SubjectAlternativeNameOid)
                {
                    CountUris(extension.RawData, ref count, ref uri);
                }
            }
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            error = $"the subject alternative name extension cannot be decoded: {e.Message}";
            return false;
        }

        switch (count)
        {
            case 0:
                error = "the certificate has no URI subject alternative name (no SPIFFE ID)";
                return false;
            case > 1:
                error = $"the certificate has {count} URI subject alternative names; a workload certificate has exactly one (its SPIFFE ID)";
                return false;
        }

        if (!SpiffeId.TryParse(uri, out id, out var parseError))
        {
            error = $"the certificate's URI subject alternative name is not a valid SPIFFE ID: {parseError}";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>
    /// Counts the uniformResourceIdentifier entries of a DER GeneralNames (RFC 5280 4.2.1.6) and keeps the first.
    /// .NET's <see cref="X509SubjectAlternativeNameExtension"/> enumerates DNS names and IP addresses only, so the URI
    /// entries are read with <see cref="AsnReader"/>: <c>GeneralNames ::= SEQUENCE OF GeneralName</c>,
    /// <c>uniformResourceIdentifier [6] IMPLICIT IA5String</c>.
    /// </summary>
    private static void CountUris(byte[] generalNames, ref int count, ref string? first)
    {
        var reader = new AsnReader(generalNames, AsnEncodingRules.DER);
        var names = reader.ReadSequence();
        reader.ThrowIfNotEmpty();
        while (names.HasData)
        {
            var tag = names.PeekTag();
            if (tag.TagClass == TagClass.ContextSpecific && tag.TagValue == UriTag.TagValue && !tag.IsConstructed)
            {
                var value = names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag);
                count++;
                first ??= value;
            }
            else
            {
                names.ReadEncodedValue();
            }
        }
    }

    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    /// <summary>The SPIFFE ID of <paramref name="certificate"/>, or null when it has none (see <see cref="TryGetSpiffeId"/>).</summary>
    public static SpiffeId? GetSpiffeIdOrNull(X509Certificate2 certificate)
        => TryGetSpiffeId(certificate, out var id, out _) ? id : null;

    /// <summary>Suffix of the subject common name of a mesh root made by <c>sidecar ca init</c>: "&lt;trust-domain&gt; mesh root".</summary>
    public const string MeshRootNameSuffix = " mesh root";

    /// <summary>
    /// The trust domain a CA certificate signs for: the trust domain of its SPIFFE ID URI SAN (<c>spiffe://&lt;trust-domain&gt;</c>),
    /// else the one named by a subject CN "&lt;trust-domain&gt; mesh root"; null when it declares none.
    /// </summary>
    public static string? GetTrustDomainOrNull(X509Certificate2 caCertificate)
    {
        if (TryGetSpiffeId(caCertificate, out var id, out _))
        {
            return id.TrustDomain;
        }

        var cn = caCertificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (cn is not null && cn.EndsWith(MeshRootNameSuffix, StringComparison.Ordinal))
        {
            var trustDomain = cn[..^MeshRootNameSuffix.Length];
            return SpiffeId.ValidateTrustDomain(trustDomain) is null ? trustDomain : null;
        }

        return null;
    }
}

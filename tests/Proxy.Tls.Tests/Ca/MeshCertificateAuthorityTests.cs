using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Ca;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Ca;

public sealed class MeshCertificateAuthorityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("proxy-ca-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void CreateRoot_HasTheDocumentedShape()
    {
        using var ca = MeshCertificateAuthority.CreateRoot("prod.example", TimeSpan.FromDays(10));
        var root = ca.Certificate;
        Assert.Equal("CN=prod.example mesh root", root.Subject);
        Assert.Equal(root.Subject, root.Issuer);
        Assert.True(root.Extensions["2.5.29.19"] is X509BasicConstraintsExtension { CertificateAuthority: true, Critical: true });
        Assert.Equal(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, ((X509KeyUsageExtension)root.Extensions["2.5.29.15"]!).KeyUsages);
        Assert.NotNull(root.Extensions["2.5.29.14"]);
        Assert.Equal("prod.example", ca.TrustDomain);
        Assert.Equal("spiffe://prod.example", CertificateIdentity.GetSpiffeIdOrNull(root)?.Uri);
        using var key = root.GetECDsaPrivateKey();
        Assert.Equal(256, key!.KeySize);
        Assert.Throws<FormatException>(() => MeshCertificateAuthority.CreateRoot("Prod", TimeSpan.FromDays(1)));
    }

    [Fact]
    public void Issue_WorkloadCertificateShape()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = ca.Issue(SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/b"), ["b.a.svc"], TimeSpan.FromHours(1));
        Assert.True(leaf.HasPrivateKey);
        Assert.Equal("", leaf.Subject);
        Assert.Equal(ca.Certificate.Subject, leaf.Issuer);
        Assert.True(leaf.Extensions["2.5.29.17"]!.Critical);
        Assert.True(leaf.Extensions["2.5.29.19"] is X509BasicConstraintsExtension { CertificateAuthority: false });
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, ((X509KeyUsageExtension)leaf.Extensions["2.5.29.15"]!).KeyUsages);
        var ekus = ((X509EnhancedKeyUsageExtension)leaf.Extensions["2.5.29.37"]!).EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value!).ToArray();
        Assert.Equal(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], ekus);
        var aki = (X509AuthorityKeyIdentifierExtension)leaf.Extensions["2.5.29.35"]!;
        var ski = (X509SubjectKeyIdentifierExtension)ca.Certificate.Extensions["2.5.29.14"]!;
        Assert.Equal(ski.SubjectKeyIdentifier, Convert.ToHexString(aki.KeyIdentifier!.Value.Span));
        Assert.Equal(["b.a.svc"], new X509SubjectAlternativeNameExtension(leaf.Extensions["2.5.29.17"]!.RawData).EnumerateDnsNames());
        Assert.Equal(16, leaf.SerialNumberBytes.Length);
    }

    [Fact]
    public void Issue_SerialsAreRandom()
    {
        using var ca = TestCertificates.NewCa();
        var id = SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/b");
        using var a = ca.Issue(id, [], TimeSpan.FromHours(1));
        using var b = ca.Issue(id, [], TimeSpan.FromHours(1));
        Assert.NotEqual(a.SerialNumber, b.SerialNumber);
    }

    [Fact]
    public void Issue_CutShortAtTheCasExpiry()
    {
        using var ca = MeshCertificateAuthority.CreateRoot("cluster.local", TimeSpan.FromHours(2));
        using var leaf = ca.Issue(SpiffeId.Parse("spiffe://cluster.local/x"), [], TimeSpan.FromDays(1));
        Assert.Equal(ca.Certificate.NotAfter, leaf.NotAfter);
    }

    [Fact]
    public void Issue_OtherTrustDomainOrTrustDomainId_Refused()
    {
        using var ca = TestCertificates.NewCa();
        var e = Assert.Throws<ArgumentException>(() => ca.Issue(SpiffeId.Parse("spiffe://other.org/x"), [], TimeSpan.FromHours(1)));
        Assert.Contains("this CA signs for cluster.local", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ca.Issue(SpiffeId.Parse("spiffe://cluster.local"), [], TimeSpan.FromHours(1)));
        Assert.Throws<ArgumentException>(() => ca.Issue(SpiffeId.Parse("spiffe://cluster.local/x"), ["no spaces"], TimeSpan.FromHours(1)));
    }

    [Fact]
    public void Load_IntermediateCa_IssuesLeavesThatVerifyWithTheChain()
    {
        using var root = TestCertificates.NewCa();

        using var ca = TestCertificates.NewIntermediate(root, _dir);
        Assert.Equal("cluster.local", ca.TrustDomain);
        Assert.Single(ca.Chain);
        using var leaf = ca.Issue(SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/b"), [], TimeSpan.FromHours(1));

        using var trust = new MeshTrust([root.Certificate]);
        X509Certificate2Collection presented = [];
        presented.ImportFromPem(ca.WorkloadChainPem(leaf));
        Assert.Equal(3, presented.Count);
        Assert.True(trust.Verify(leaf, presented, PeerRole.Client).IsValid);
        Assert.Equal(PeerVerificationError.UntrustedIssuer, trust.Verify(leaf, null, PeerRole.Client).Error);
    }

    [Fact]
    public void Load_NotACa_OrMismatchedKey_Throws()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Issue(ca, "spiffe://cluster.local/x");
        var certPath = Path.Combine(_dir, "ca.crt");
        var keyPath = Path.Combine(_dir, "ca.key");
        CertificateFiles.Write(ca, leaf, certPath, keyPath);
        var notCa = Assert.Throws<CertificateLoadException>(() => MeshCertificateAuthority.Load(certPath, keyPath));
        Assert.Contains("is not a CA certificate", notCa.Message, StringComparison.Ordinal);

        File.WriteAllText(certPath, ca.CertificateChainPem());
        var mismatch = Assert.Throws<CertificateLoadException>(() => MeshCertificateAuthority.Load(certPath, keyPath));
        Assert.Contains("cannot pair the CA certificate", mismatch.Message, StringComparison.Ordinal);
    }
}

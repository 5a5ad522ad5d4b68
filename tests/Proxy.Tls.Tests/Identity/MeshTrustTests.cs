using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Identity;

public sealed class MeshTrustTests : IDisposable
{
    private const string Web = "spiffe://cluster.local/ns/default/sa/web";
    // Made a month ago, so leaves with past dates can be issued under it.
    private readonly Proxy.Tls.Ca.MeshCertificateAuthority _ca = Proxy.Tls.Ca.MeshCertificateAuthority.CreateRoot("cluster.local", TimeSpan.FromDays(365), new TestClock(DateTimeOffset.UtcNow.AddDays(-30)));
    private readonly MeshTrust _trust;

    public MeshTrustTests() => _trust = new MeshTrust([_ca.Certificate]);

    public void Dispose()
    {
        _trust.Dispose();
        _ca.Dispose();
    }

    [Theory]
    [InlineData(PeerRole.Client)]
    [InlineData(PeerRole.Server)]
    public void Verify_CaIssued_ReturnsIdentity(PeerRole role)
    {
        using var leaf = TestCertificates.Issue(_ca, Web);
        var result = _trust.Verify(leaf, null, role);
        Assert.True(result.IsValid, result.ToString());
        Assert.Equal(Web, result.Identity?.Uri);
        Assert.Equal(["cluster.local"], _trust.TrustDomains);
    }

    [Fact]
    public void Verify_AnotherCasCertificate_UntrustedIssuer()
    {
        using var other = TestCertificates.NewCa();
        using var leaf = TestCertificates.Issue(other, Web);
        var result = _trust.Verify(leaf, [other.Certificate], PeerRole.Client);
        Assert.Equal(PeerVerificationError.UntrustedIssuer, result.Error);
        Assert.Contains("does not chain to a mesh root", result.Reason, StringComparison.Ordinal);
        Assert.Null(result.Identity);
    }

    [Fact]
    public void Verify_Expired_SaysExpired()
    {
        var now = DateTimeOffset.UtcNow;
        using var leaf = TestCertificates.Custom(_ca, [Web], notBefore: now.AddDays(-2), notAfter: now.AddDays(-1));
        var result = _trust.Verify(leaf, null, PeerRole.Client);
        Assert.Equal(PeerVerificationError.Expired, result.Error);
        Assert.Contains("expired at", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_InjectedClock_DecidesValidity()
    {
        using var leaf = TestCertificates.Issue(_ca, Web, TimeSpan.FromHours(1));
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var trust = new MeshTrust([_ca.Certificate], clock);
        Assert.True(trust.Verify(leaf, null, PeerRole.Client).IsValid);

        clock.Now = clock.Now.AddHours(2);
        Assert.Equal(PeerVerificationError.Expired, trust.Verify(leaf, null, PeerRole.Client).Error);

        clock.Now = clock.Now.AddDays(-1);
        Assert.Equal(PeerVerificationError.NotYetValid, trust.Verify(leaf, null, PeerRole.Client).Error);
    }

    [Fact]
    public void Verify_WrongIdentity_NamesBoth()
    {
        using var leaf = TestCertificates.Issue(_ca, Web);
        var expected = IdentityPattern.Exact(SpiffeId.Parse("spiffe://cluster.local/ns/default/sa/api"));
        var result = _trust.Verify(leaf, null, PeerRole.Server, expected);
        Assert.Equal(PeerVerificationError.WrongIdentity, result.Error);
        Assert.Equal(Web, result.Identity?.Uri);
        Assert.Equal($"the peer identity {Web} is not spiffe://cluster.local/ns/default/sa/api", result.Reason);
        Assert.Throws<InvalidOperationException>(() => result.ToPeerIdentityFeature());

        Assert.True(_trust.Verify(leaf, null, PeerRole.Server, IdentityPattern.Namespace("cluster.local", "default")).IsValid);
    }

    [Theory]
    [InlineData(PeerRole.Client, "1.3.6.1.5.5.7.3.1", "clientAuth")]
    [InlineData(PeerRole.Server, "1.3.6.1.5.5.7.3.2", "serverAuth")]
    public void Verify_WrongExtendedKeyUsage_Refused(PeerRole role, string onlyEku, string missing)
    {
        using var leaf = TestCertificates.Custom(_ca, [Web], ekus: [onlyEku]);
        var result = _trust.Verify(leaf, null, role);
        Assert.Equal(PeerVerificationError.WrongKeyUsage, result.Error);
        Assert.Contains(missing, result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_NoDigitalSignature_Refused()
    {
        using var leaf = TestCertificates.Custom(_ca, [Web], keyUsage: X509KeyUsageFlags.KeyEncipherment);
        Assert.Equal(PeerVerificationError.WrongKeyUsage, _trust.Verify(leaf, null, PeerRole.Client).Error);
    }

    [Fact]
    public void Verify_NoSpiffeId_NoIdentity()
    {
        using var leaf = TestCertificates.Custom(_ca, ["https://web.example/"]);
        var result = _trust.Verify(leaf, null, PeerRole.Client);
        Assert.Equal(PeerVerificationError.NoIdentity, result.Error);
        Assert.Contains("not a valid SPIFFE ID", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_IdentityOutsideTheRootsTrustDomain_Refused()
    {
        using var leaf = TestCertificates.Custom(_ca, ["spiffe://evil.org/ns/default/sa/web"]);
        var result = _trust.Verify(leaf, null, PeerRole.Client);
        Assert.Equal(PeerVerificationError.WrongTrustDomain, result.Error);
        Assert.Contains("not in trust domain cluster.local", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_NoCertificate_Refused()
    {
        Assert.Equal(PeerVerificationError.NoCertificate, _trust.Verify((X509Certificate2?)null, null, PeerRole.Client).Error);
        Assert.Equal(PeerVerificationError.NoCertificate, _trust.Verify((X509Certificate?)null, null, PeerRole.Client).Error);
    }

    [Fact]
    public void Verify_TwoRoots_EachAnchorsItsOwnTrustDomain()
    {
        using var other = TestCertificates.NewCa("other.org");
        using var trust = new MeshTrust([_ca.Certificate, other.Certificate]);
        using var a = TestCertificates.Issue(_ca, Web);
        using var b = TestCertificates.Issue(other, "spiffe://other.org/ns/x/sa/y");
        using var forged = TestCertificates.Custom(other, [Web]);
        Assert.True(trust.Verify(a, null, PeerRole.Client).IsValid);
        Assert.True(trust.Verify(b, null, PeerRole.Client).IsValid);
        Assert.Equal(PeerVerificationError.WrongTrustDomain, trust.Verify(forged, null, PeerRole.Client).Error);
    }

    [Fact]
    public void FromPem_NotACa_Throws()
    {
        using var leaf = TestCertificates.Issue(_ca, Web);
        var e = Assert.Throws<CertificateLoadException>(() => MeshTrust.FromPem(leaf.ExportCertificatePem()));
        Assert.Contains("is not a CA certificate", e.Message, StringComparison.Ordinal);
        Assert.Throws<CertificateLoadException>(() => MeshTrust.FromPem("nothing here"));
    }

    [Fact]
    public void CreateValidationCallback_ReportsResult()
    {
        using var leaf = TestCertificates.Issue(_ca, Web);
        PeerVerification? seen = null;
        var callback = _trust.CreateValidationCallback(PeerRole.Client, observe: r => seen = r);
        Assert.True(callback(this, leaf, null, System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.Equal(Web, seen?.Identity?.Uri);
    }
}

using Proxy.Tls.Identity;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Identity;

public sealed class CertificateIdentityTests
{
    [Fact]
    public void TryGetSpiffeId_OneSpiffeUri_ReturnsIt()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Issue(ca, "spiffe://cluster.local/ns/default/sa/web");
        Assert.True(CertificateIdentity.TryGetSpiffeId(leaf, out var id, out var error), error);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/web", id.Uri);
        Assert.Equal("web", id.ServiceAccount);
    }

    [Fact]
    public void TryGetSpiffeId_NoUriSan_NoIdentity()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Custom(ca, [], subject: "CN=web");
        Assert.False(CertificateIdentity.TryGetSpiffeId(leaf, out var id, out var error));
        Assert.Null(id);
        Assert.Contains("no URI subject alternative name", error, StringComparison.Ordinal);
        Assert.Null(CertificateIdentity.GetSpiffeIdOrNull(leaf));
    }

    [Fact]
    public void TryGetSpiffeId_TwoUris_NoIdentity()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Custom(ca, ["spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/c"]);
        Assert.False(CertificateIdentity.TryGetSpiffeId(leaf, out _, out var error));
        Assert.Contains("2 URI subject alternative names", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_SpiffeAndHttpsUri_NoIdentity()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Custom(ca, ["https://web.example/", "spiffe://cluster.local/ns/a/sa/b"]);
        Assert.False(CertificateIdentity.TryGetSpiffeId(leaf, out _, out var error));
        Assert.Contains("2 URI subject alternative names", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_NonSpiffeUri_NoIdentity()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Custom(ca, ["https://web.example/path"]);
        Assert.False(CertificateIdentity.TryGetSpiffeId(leaf, out _, out var error));
        Assert.Contains("not a valid SPIFFE ID", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_InvalidSpiffeUri_NoIdentity()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Custom(ca, ["spiffe://cluster.local:99/ns/a"]);
        Assert.False(CertificateIdentity.TryGetSpiffeId(leaf, out _, out var error));
        Assert.Contains("no port", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_DnsNamesBesideTheUri_Ignored()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = ca.Issue(SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/b"), ["web.a.svc", "web"], TimeSpan.FromHours(1));
        Assert.Equal("spiffe://cluster.local/ns/a/sa/b", CertificateIdentity.GetSpiffeIdOrNull(leaf)?.Uri);
    }

    [Fact]
    public void GetTrustDomainOrNull_MeshRoot_FromUriSan()
    {
        using var ca = TestCertificates.NewCa("prod.example");
        Assert.Equal("prod.example", CertificateIdentity.GetTrustDomainOrNull(ca.Certificate));
    }
}

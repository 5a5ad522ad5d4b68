using Proxy.Core.Metrics;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Identity;

/// <summary>The mesh trust bundle read from a file and reloaded on change (a root CA rotation).</summary>
public sealed class FileMeshTrustSourceTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proxy-trust-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string BundlePath => Path.Combine(_dir.FullName, "ca.crt");

    [Fact]
    public void Rotation_OldAndNewRootsThenNewOnly_VerifiesWhatEachBundleTrusts()
    {
        using var oldCa = TestCertificates.NewCa();
        using var newCa = TestCertificates.NewCa();
        using var oldLeaf = TestCertificates.Issue(oldCa, "spiffe://cluster.local/ns/a/sa/x");
        using var newLeaf = TestCertificates.Issue(newCa, "spiffe://cluster.local/ns/a/sa/x");
        File.WriteAllText(BundlePath, oldCa.Certificate.ExportCertificatePem());
        using var metrics = new ProxyMetrics();
        using var source = new FileMeshTrustSource(BundlePath, "mesh-trust-bundle", Timeout.InfiniteTimeSpan, metrics: metrics);
        var first = source.Current;
        Assert.True(first.Verify(oldLeaf, null, PeerRole.Client).IsValid);
        Assert.Equal(PeerVerificationError.UntrustedIssuer, first.Verify(newLeaf, null, PeerRole.Client).Error);

        // Unchanged content: nothing reloaded.
        Assert.False(source.CheckNow());
        Assert.Same(first, source.Current);

        // Both roots during the rotation.
        // (The directory watcher may reload first; CheckNow then finds nothing new: either way the trust is the file's.)
        File.WriteAllText(BundlePath, oldCa.Certificate.ExportCertificatePem() + "\n" + newCa.Certificate.ExportCertificatePem());
        source.CheckNow();
        Assert.NotSame(first, source.Current);
        Assert.True(source.Current.Verify(oldLeaf, null, PeerRole.Client).IsValid);
        Assert.True(source.Current.Verify(newLeaf, null, PeerRole.Client).IsValid);

        // The new root alone.
        File.WriteAllText(BundlePath, newCa.Certificate.ExportCertificatePem());
        source.CheckNow();
        Assert.Equal(PeerVerificationError.UntrustedIssuer, source.Current.Verify(oldLeaf, null, PeerRole.Client).Error);
        Assert.True(source.Current.Verify(newLeaf, null, PeerRole.Client).IsValid);
    }

    [Fact]
    public void BadContent_KeepsThePreviousTrust()
    {
        using var ca = TestCertificates.NewCa();
        using var leaf = TestCertificates.Issue(ca, "spiffe://cluster.local/ns/a/sa/x");
        File.WriteAllText(BundlePath, ca.Certificate.ExportCertificatePem());
        using var source = new FileMeshTrustSource(BundlePath, "mesh-trust-bundle", Timeout.InfiniteTimeSpan);
        var before = source.Current;

        File.WriteAllText(BundlePath, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
        Assert.False(source.CheckNow());
        Assert.Same(before, source.Current);

        // A leaf is not a root.
        File.WriteAllText(BundlePath, leaf.ExportCertificatePem());
        Assert.False(source.CheckNow());
        Assert.Same(before, source.Current);
        Assert.True(source.Current.Verify(leaf, null, PeerRole.Client).IsValid);
    }

    [Fact]
    public void MissingAtStart_Throws()
        => Assert.Throws<CertificateLoadException>(() => new FileMeshTrustSource(BundlePath, "mesh-trust-bundle", Timeout.InfiniteTimeSpan));
}

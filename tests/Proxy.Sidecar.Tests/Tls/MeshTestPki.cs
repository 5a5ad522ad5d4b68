using Proxy.Core.Configuration;
using Proxy.Tls.Ca;
using Proxy.Tls.Identity;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// A mesh for tests: a root CA (<c>sidecar ca</c>'s code) in a temporary directory, its bundle as <c>ca.crt</c>, and
/// workload identities issued into PEM files the sidecars read (<see cref="MeshFor"/>). Disposing removes the directory.
/// </summary>
internal sealed class MeshTestPki : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proxy-mesh-");
    private int _files;

    public MeshTestPki(string trustDomain = "cluster.local", TimeProvider? time = null)
    {
        Ca = MeshCertificateAuthority.CreateRoot(trustDomain, TimeSpan.FromDays(10), time);
        TrustBundlePath = Write("ca.crt", Ca.Certificate.ExportCertificatePem());
    }

    public MeshCertificateAuthority Ca { get; }

    public string TrustBundlePath { get; }

    /// <summary>The temporary directory (removed on dispose).</summary>
    public string DirectoryPath => _dir.FullName;

    /// <summary>Issues <paramref name="identity"/> (valid for an hour from <paramref name="time"/>'s now) and returns its chain and key files.</summary>
    public (string Certificate, string Key) IssueFiles(string identity, TimeProvider? time = null, TimeSpan? lifetime = null)
    {
        using var leaf = Ca.Issue(SpiffeId.Parse(identity), [], lifetime ?? TimeSpan.FromHours(1), time);
        var n = Interlocked.Increment(ref _files);
        return (Write($"w{n}.crt", Ca.WorkloadChainPem(leaf)), Write($"w{n}.key", MeshCertificateAuthority.PrivateKeyPem(leaf)));
    }

    /// <summary>A mesh section for a sidecar with workload identity <paramref name="identity"/>.</summary>
    public MeshConfig MeshFor(string identity, MeshMode mode = MeshMode.Permissive)
    {
        var (certificate, key) = IssueFiles(identity);
        return new MeshConfig { CertificatePath = certificate, KeyPath = key, TrustBundlePath = TrustBundlePath, Mode = mode };
    }

    public string Write(string name, string text)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, text);
        return path;
    }

    public void Dispose()
    {
        Ca.Dispose();
        _dir.Delete(recursive: true);
    }
}

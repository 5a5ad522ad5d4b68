using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Proxy.Tls.Ca;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>Writes workload certificate files into a temp directory, plainly or in the Kubernetes secret-volume layout.</summary>
internal static partial class CertificateFiles
{
    public static void Write(MeshCertificateAuthority ca, X509Certificate2 leaf, string certPath, string keyPath)
    {
        File.WriteAllText(certPath, ca.WorkloadChainPem(leaf));
        File.WriteAllText(keyPath, MeshCertificateAuthority.PrivateKeyPem(leaf));
    }

    /// <summary>
    /// The layout kubelet makes for a secret volume: <c>..&lt;timestamp&gt;/</c> holds the files, <c>..data</c> links to
    /// it, and <c>tls.crt</c>/<c>tls.key</c> link to <c>..data/tls.crt</c>/<c>..data/tls.key</c>. An update writes a new
    /// timestamped directory, points <c>..data_tmp</c> at it and renames that over <c>..data</c> (one atomic rename(2)).
    /// </summary>
    public static void WriteKubernetesVolume(string dir, MeshCertificateAuthority ca, X509Certificate2 leaf, int version)
    {
        var data = $"..2026_11_27_{version:D2}";
        Directory.CreateDirectory(Path.Combine(dir, data));
        Write(ca, leaf, Path.Combine(dir, data, "tls.crt"), Path.Combine(dir, data, "tls.key"));
        var tmp = Path.Combine(dir, "..data_tmp");
        File.CreateSymbolicLink(tmp, data);
        if (Rename(tmp, Path.Combine(dir, "..data")) != 0)
        {
            throw new IOException($"rename failed: errno {Marshal.GetLastPInvokeError()}");
        }

        foreach (var name in new[] { "tls.crt", "tls.key" })
        {
            var link = Path.Combine(dir, name);
            if (!File.Exists(link))
            {
                File.CreateSymbolicLink(link, Path.Combine("..data", name));
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "rename", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Rename(string oldPath, string newPath);
}

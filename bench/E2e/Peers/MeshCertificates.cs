using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>One hop's workload certificate: its SPIFFE ID, <c>tls.crt</c> (leaf + CA chain), <c>tls.key</c>, and both in one PEM for HAProxy.</summary>
internal sealed record MeshHopCertificate(string Identity, string CertificatePath, string KeyPath, string CombinedPemPath);

/// <summary>
/// The mesh certificates of the two-hop scenario, made by the published sidecar itself:
/// <c>sidecar ca init --out DIR/ca --trust-domain cluster.local</c> (<c>ca.crt</c>, <c>ca.key</c>), then per hop
/// <c>sidecar ca issue --ca-dir DIR/ca --identity spiffe://cluster.local/ns/bench/sa/HOP --out DIR/HOP</c>
/// (<c>tls.crt</c>, <c>tls.key</c>; ECDSA P-256, 24 h). HAProxy's <c>crt</c> wants certificate and key in one file:
/// <c>DIR/HOP/haproxy.pem</c> is tls.crt followed by tls.key.
/// </summary>
internal sealed record MeshCertificates(string CaCertificatePath, MeshHopCertificate Hop1, MeshHopCertificate Hop2)
{
    public const string TrustDomain = "cluster.local";

    /// <summary>The SPIFFE ID of <paramref name="hop"/> ("hop1", "hop2").</summary>
    public static string IdentityOf(string hop) => $"spiffe://{TrustDomain}/ns/bench/sa/{hop}";

    /// <summary>What the sidecar's hops are given in their "mesh" section.</summary>
    public MeshTlsFiles SidecarFiles(MeshHopCertificate hop) => new(hop.CertificatePath, hop.KeyPath, CaCertificatePath);

    /// <summary>What HAProxy's hops are given on their bind/server lines.</summary>
    public HaproxyTlsFiles HaproxyFiles(MeshHopCertificate hop) => new(hop.CombinedPemPath, CaCertificatePath);

    /// <summary>The <c>ca init</c> command line (after the executable).</summary>
    public static IReadOnlyList<string> InitArguments(string caDirectory) => ["ca", "init", "--out", caDirectory, "--trust-domain", TrustDomain];

    /// <summary>The <c>ca issue</c> command line for <paramref name="hop"/> (after the executable).</summary>
    public static IReadOnlyList<string> IssueArguments(string caDirectory, string hop, string outDirectory) =>
        ["ca", "issue", "--ca-dir", caDirectory, "--identity", IdentityOf(hop), "--out", outDirectory];

    /// <summary>Certificate chain then key, each ending in a newline (PEM blocks must start on their own line).</summary>
    public static string CombinePem(string certificatePem, string keyPem) =>
        WithNewline(certificatePem) + WithNewline(keyPem);

    /// <summary>Runs the published sidecar's CA commands into <paramref name="directory"/>; throws <see cref="E2eException"/> with its output on failure.</summary>
    public static async Task<MeshCertificates> CreateAsync(SidecarBuild build, string directory, CancellationToken cancellationToken)
    {
        var environment = SidecarPeer.JitEnvironment(build);
        var caDirectory = Path.Combine(directory, "ca");
        await RunAsync(build, InitArguments(caDirectory), environment, cancellationToken);
        var hops = new List<MeshHopCertificate>();
        foreach (var hop in new[] { "hop1", "hop2" })
        {
            var outDirectory = Path.Combine(directory, hop);
            await RunAsync(build, IssueArguments(caDirectory, hop, outDirectory), environment, cancellationToken);
            var certificate = Path.Combine(outDirectory, "tls.crt");
            var key = Path.Combine(outDirectory, "tls.key");
            var combined = Path.Combine(outDirectory, "haproxy.pem");
            await File.WriteAllTextAsync(
                combined,
                CombinePem(await File.ReadAllTextAsync(certificate, cancellationToken), await File.ReadAllTextAsync(key, cancellationToken)),
                cancellationToken);
            if (OperatingSystem.IsLinux())
            {
                // It holds the private key, like tls.key (0600).
                File.SetUnixFileMode(combined, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            hops.Add(new MeshHopCertificate(IdentityOf(hop), certificate, key, combined));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"mesh certificates: CA and {hops[0].Identity}, {hops[1].Identity} in {directory}"));
        return new MeshCertificates(Path.Combine(caDirectory, "ca.crt"), hops[0], hops[1]);
    }

    private static async Task RunAsync(SidecarBuild build, IReadOnlyList<string> arguments, Dictionary<string, string>? environment, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(build.ExecutablePath, arguments, TimeSpan.FromSeconds(60), cancellationToken, environment);
        if (result.ExitCode != 0)
        {
            throw new E2eException($"sidecar {string.Join(' ', arguments)} failed (exit {result.ExitCode}):\n{result.RecentOutput}");
        }
    }

    private static string WithNewline(string text) => text.EndsWith('\n') ? text : text + "\n";
}

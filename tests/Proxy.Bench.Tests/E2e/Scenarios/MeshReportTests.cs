using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e.Scenarios;

public sealed class MeshReportTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Render_TwoRounds_SumsBothHopsPairsRatiosWithBothHaproxyPairsAndLeavesInvalidRunsOut()
    {
        var options = E2eOptions.Parse(["--scenario", "mesh", "--variants", "c32", "--repeat", "2"]);
        var report = new MeshReport(options);
        var build = new SidecarBuild(SidecarFlavor.Aot, "/x/sidecar", 3 << 20, TimeSpan.FromSeconds(40));
        var certificates = new MeshCertificates(
            "/c/ca/ca.crt",
            new MeshHopCertificate(MeshCertificates.IdentityOf("hop1"), "/c/hop1/tls.crt", "/c/hop1/tls.key", "/c/hop1/haproxy.pem"),
            new MeshHopCertificate(MeshCertificates.IdentityOf("hop2"), "/c/hop2/tls.crt", "/c/hop2/tls.key", "/c/hop2/haproxy.pem"));
        report.AddPeer(new DirectPeer());
        report.AddPeer(new HaproxyMeshPeer("haproxy-plain", "/usr/sbin/haproxy", "HAProxy 2.6.12", null, "/tmp"));
        report.AddPeer(new HaproxyMeshPeer("haproxy-tls", "/usr/sbin/haproxy", "HAProxy 2.6.12", certificates, "/tmp"));
        report.AddPeer(new SidecarMeshPeer("sidecar-plain", build, [], null, "/tmp"));
        report.AddPeer(new SidecarMeshPeer("sidecar-mtls", build, [], certificates, "/tmp"));
        report.AddBuild(build);

        // 20 000 requests per run. CPU per request: haproxy-plain 30 µs (hop 1 20, hop 2 10), haproxy-tls 40 (25 + 15),
        // sidecar-plain 20 (10 + 10), sidecar-mtls 24 (14 + 10).
        for (var round = 0; round < 2; round++)
        {
            report.AddSample(new MeshSample("direct", "c32", round, Wrk(30_000, p50: 100), null, null, null, null));
            report.AddSample(new MeshSample("haproxy-plain", "c32", round, Wrk(10_000, p50: 400), new CpuTimes(0.2, 0.2), new CpuTimes(0.1, 0.1), 10 * MiB, 12 * MiB));
            report.AddSample(new MeshSample("haproxy-tls", "c32", round, Wrk(round == 0 ? 8_000 : 9_000, p50: 500), new CpuTimes(0.3, 0.2), new CpuTimes(0.2, 0.1), 14 * MiB, 16 * MiB));
            report.AddSample(new MeshSample("sidecar-plain", "c32", round, Wrk(12_000, p50: 300), new CpuTimes(0.1, 0.1), new CpuTimes(0.1, 0.1), 20 * MiB, 21 * MiB));
            report.AddSample(new MeshSample("sidecar-mtls", "c32", round, Wrk(10_000, p50: 350, non2xx: round == 1 ? 3 : 0), new CpuTimes(0.14, 0.14), new CpuTimes(0.1, 0.1), 30 * MiB, 31 * MiB));
        }

        report.AddFailure("sidecar-mtls", "start: boom");

        var markdown = report.Render();

        Assert.Contains("| direct | 30000 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| haproxy-plain | 10000 | 1.18 (1.11–1.25) | baseline | 400 | 2000 | 300 | 30.0 | 20.0 | 10.0 | 15.0 | 15.0 | 0.75 | 10.0 | 12.0 | 2/2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| haproxy-tls | 8500 (8000–9000) | baseline | 0.85 (0.80–0.90) | 500 | 2000 | 400 | 40.0 | 25.0 | 15.0 | 25.0 | 15.0 | baseline | 14.0 | 16.0 | 2/2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-plain | 12000 | 1.42 (1.33–1.50) | 1.20 | 300 | 2000 | 200 | 20.0 | 10.0 | 10.0 | 10.0 | 10.0 | 0.50 | 20.0 | 21.0 | 2/2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-mtls | 10000 | 1.25 | 1.00 | 350 | 2000 | 250 | 24.0 | 14.0 | 10.0 | 12.0 | 12.0 | 0.60 | 30.0 | 31.0 | 1/2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32 | HAProxy (haproxy-tls vs haproxy-plain) | 0.85 (0.80–0.90) | 10.0 | 100 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32 | sidecar (sidecar-mtls vs sidecar-plain) | 0.83 | 4.0 | 50 |", markdown, StringComparison.Ordinal);
        Assert.Contains("- sidecar-mtls, c32, round 2: 3 non-2xx/3xx responses (20000 requests, 10000 req/s)", markdown, StringComparison.Ordinal);
        Assert.Contains("- **sidecar-mtls**: start: boom", markdown, StringComparison.Ordinal);
        Assert.Contains("| Aot | 40 s | 3.0 MiB |", markdown, StringComparison.Ordinal);
        Assert.Contains("hop 1 service \"mesh\": { \"identity\": \"spiffe://cluster.local/ns/bench/sa/hop2\" }", markdown, StringComparison.Ordinal);

        var csv = report.RenderCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(11, csv.Length);
        Assert.Contains("sidecar-mtls,c32,2,0,20000,2.000,10000.00,350.0,,,2000.0,0.140,0.140,0.100,0.100,31457280,32505856,0,0,0,0,3", csv);
        Assert.Contains("direct,c32,1,1,20000,2.000,30000.00,100.0,,,2000.0,,,,,,,0,0,0,0,0", csv);
    }

    [Fact]
    public void Render_WithoutPlainPairs_HasNoTlsCostTable()
    {
        var options = E2eOptions.Parse(["--scenario", "mesh", "--variants", "c1", "--repeat", "1"]);
        var report = new MeshReport(options);
        report.AddPeer(new HaproxyMeshPeer("haproxy-tls", "/usr/sbin/haproxy", "HAProxy 2.6.12", null, "/tmp"));
        report.AddSample(new MeshSample("haproxy-tls", "c1", 0, Wrk(5_000, p50: 200), new CpuTimes(0.1, 0.1), new CpuTimes(0.1, 0.1), MiB, MiB));

        var markdown = report.Render();

        Assert.Contains("## c1: 1 keep-alive connection (latency)", markdown, StringComparison.Ordinal);
        Assert.Contains("| haproxy-tls | 5000 | baseline | – | 200 | 2000 | – | 20.0 |", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("What TLS between the hops costs", markdown, StringComparison.Ordinal);
    }

    private static WrkResult Wrk(double requestsPerSecond, double p50, long non2xx = 0) =>
        new(20_000, 2.0, requestsPerSecond, p50, null, null, 2000, default, non2xx, string.Empty);
}

using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e.Scenarios;

public sealed class HttpReportTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Render_ThreeRounds_PairsRatiosPerRoundLeavesInvalidRunsOutAndChecksTargets()
    {
        var options = E2eOptions.Parse(["--scenario", "http", "--variants", "c32", "--repeat", "3"]);
        var report = new HttpReport(options);
        var build = new SidecarBuild(SidecarFlavor.Aot, "/x/sidecar", 3 << 20, TimeSpan.FromSeconds(40));
        report.AddPeer(new DirectPeer());
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddPeer(new SidecarPeer("sidecar-aot", build, [], "/tmp"));
        report.AddBuild(build);

        // HAProxy: 25 us/req (12.5 user + 12.5 sys); the sidecar 20 us/req (5 + 15) and 1.2x / 1.3x the req/s.
        report.AddSample(new HttpSample("direct", "c32", 0, Wrk(30_000, 60_000, p50: 500), null, null));
        report.AddSample(new HttpSample("direct", "c32", 1, Wrk(30_000, 60_000, p50: 600), null, null));
        for (var round = 0; round < 3; round++)
        {
            report.AddSample(new HttpSample("haproxy", "c32", round, Wrk(10_000, 20_000, p50: 1000), new CpuTimes(0.25, 0.25), 15 * MiB));
        }

        report.AddSample(new HttpSample("sidecar-aot", "c32", 0, Wrk(12_000, 25_000, p50: 900), new CpuTimes(0.125, 0.375), 20 * MiB, AllocatedBytes: 5000, SteadyAllocatedBytesPerRequest: 0.02));
        report.AddSample(new HttpSample("sidecar-aot", "c32", 1, Wrk(13_000, 25_000, p50: 1100), new CpuTimes(0.125, 0.375), 22 * MiB, AllocatedBytes: 0, SteadyAllocatedBytesPerRequest: 0.04));
        report.AddSample(new HttpSample("sidecar-aot", "c32", 2, Wrk(99_000, 25_000, p50: 1, non2xx: 5), new CpuTimes(0.125, 0.375), 90 * MiB, AllocatedBytes: 0));
        report.AddFailure("yarp", "start: boom\nline two");

        var markdown = report.Render();

        Assert.Contains("| direct | 30000 | 3.00 | 550 (500–600) | 2000 | – | – | – | – | – | – | – | 2/2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| haproxy | 10000 | baseline | 1000 | 2000 | 450 (400–500) | 25.0 | 12.5 | 12.5 | baseline | 15.0 | – | 3/3 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-aot | 12500 (12000–13000) | 1.25 (1.20–1.30) | 1000 (900–1100) | 2000 | 450 (400–500) | 20.0 | 5.0 | 15.0 | 0.80 | 21.0 (20.0–22.0) | 0.1 (0.0–0.2) | 2/3 |", markdown, StringComparison.Ordinal);
        Assert.Contains("- sidecar-aot, c32, round 3: 5 non-2xx/3xx responses (25000 requests, 99000 req/s)", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32 req/s ≥ 1.15x HAProxy | 1.25x met |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32 CPU/req ≤ 0.85x HAProxy | 0.80x met |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c1 added p50 ≤ HAProxy's | – |", markdown, StringComparison.Ordinal);
        Assert.Contains("| 0 B allocated per request (keep-alive runs, < 1 B/req) | 0.1 B/req met |", markdown, StringComparison.Ordinal);
        Assert.Contains("| 0 B allocated per request in steady state (keep-alive, mid-run window, < 1 B/req) | 0.03 B/req met |", markdown, StringComparison.Ordinal);
        Assert.Contains("| peak RSS under load ≤ 40 MB (38.1 MiB; max over runs) | 22.0 MiB met |", markdown, StringComparison.Ordinal);
        Assert.Contains("- **yarp**: start: boom", markdown, StringComparison.Ordinal);
        Assert.Contains("| Aot | 40 s | 3.0 MiB |", markdown, StringComparison.Ordinal);

        var csv = report.RenderCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(9, csv.Length);
        Assert.Contains("sidecar-aot,c32,1,1,25000,2.000,12000.00,900.0,,,2000.0,0.125,0.375,20971520,5000,0,0,0,0,0,,0.02", csv);
        Assert.Contains("sidecar-aot,c32,3,0,25000,2.000,99000.00,1.0,,,2000.0,0.125,0.375,94371840,0,0,0,0,0,5,,", csv);
        Assert.DoesNotContain("| syscalls/req |", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_SidecarSlowerAndLarger_MarksTargetsMissed()
    {
        var options = E2eOptions.Parse(["--scenario", "http", "--variants", "c1,close", "--repeat", "1"]);
        var report = new HttpReport(options);
        var build = new SidecarBuild(SidecarFlavor.Jit, "/x/sidecar", 1 << 20, TimeSpan.FromSeconds(10));
        report.AddPeer(new DirectPeer());
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddPeer(new SidecarPeer("sidecar-jit", build, [], "/tmp"));

        report.AddSample(new HttpSample("direct", "c1", 0, Wrk(20_000, 40_000, p50: 30), null, null));
        report.AddSample(new HttpSample("haproxy", "c1", 0, Wrk(8_000, 16_000, p50: 80), new CpuTimes(0.5, 0.5), 15 * MiB));
        report.AddSample(new HttpSample("sidecar-jit", "c1", 0, Wrk(7_000, 14_000, p50: 110), new CpuTimes(0.5, 0.5), 60 * MiB, AllocatedBytes: 14_000 * 48));
        report.AddSample(new HttpSample("haproxy", "close", 0, Wrk(4_000, 8_000, p50: 3000), new CpuTimes(0.2, 0.2), 15 * MiB));
        report.AddSample(new HttpSample("sidecar-jit", "close", 0, Wrk(2_000, 4_000, p50: 6000), new CpuTimes(0.2, 0.2), 61 * MiB));

        var markdown = report.Render();

        Assert.Contains("| c1 added p50 ≤ HAProxy's | 80 µs vs 50 µs **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| close req/s ≥ HAProxy's | 0.50x **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| 0 B allocated per request (keep-alive runs, < 1 B/req) | 48.0 B/req **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| peak RSS under load ≤ 40 MB (38.1 MiB; max over runs) | 61.0 MiB **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32 req/s ≥ 1.15x HAProxy | – |", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("Invalid runs", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_CpuLimitedRuns_GetTheirSectionAndTargetRow()
    {
        var report = new HttpReport(E2eOptions.Parse(["--scenario", "http", "--variants", "c32,c32cpu,closecpu", "--repeat", "2"]));
        var build = new SidecarBuild(SidecarFlavor.Aot, "/x/sidecar", 1 << 20, TimeSpan.FromSeconds(10));
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddPeer(new SidecarPeer("sidecar-aot", build, [], "/tmp"));
        report.AddNote("c32cpu: each proxy process held to 0.5 CPU (cgroup v1, quota 50000 µs per 100000 µs period) for its runs, moved back after each.");
        for (var round = 0; round < 2; round++)
        {
            report.AddSample(new HttpSample("haproxy", "c32", round, Wrk(40_000, 80_000, p50: 600), new CpuTimes(1, 1), 15 * MiB));
            report.AddSample(new HttpSample("sidecar-aot", "c32", round, Wrk(40_000, 80_000, p50: 600), new CpuTimes(0.7, 0.7), 25 * MiB));
            report.AddSample(new HttpSample("haproxy", "c32cpu", round, Wrk(20_000, 40_000, p50: 1500), new CpuTimes(0.5, 0.5), 15 * MiB));
            report.AddSample(new HttpSample("sidecar-aot", "c32cpu", round, Wrk(26_000 + (round * 2_000), 52_000, p50: 1200), new CpuTimes(0.5, 0.5), 25 * MiB));
            report.AddSample(new HttpSample("haproxy", "closecpu", round, Wrk(8_000, 16_000, p50: 3000), new CpuTimes(0.5, 0.5), 15 * MiB));
            report.AddSample(new HttpSample("sidecar-aot", "closecpu", round, Wrk(7_600, 15_200, p50: 3100), new CpuTimes(0.5, 0.5), 25 * MiB));
        }

        var markdown = report.Render();

        Assert.Contains("| c32 req/s ≥ 1.15x HAProxy | 1.00x **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| c32cpu req/s ≥ 1.15x HAProxy (both at the same CPU limit) | 1.35x met |", markdown, StringComparison.Ordinal);
        Assert.Contains("## c32cpu: c32 with the proxy process held to a CPU limit", markdown, StringComparison.Ordinal);
        Assert.Contains("| closecpu req/s ≥ HAProxy's (both at the same CPU limit) | 0.95x **missed** |", markdown, StringComparison.Ordinal);
        Assert.Contains("## closecpu: close with the proxy process held to a CPU limit", markdown, StringComparison.Ordinal);
        Assert.Contains("- c32cpu: each proxy process held to 0.5 CPU", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_WithoutSidecarSamples_HasNoTargetsSection()
    {
        var report = new HttpReport(E2eOptions.Parse(["--scenario", "http", "--repeat", "1"]));
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddSample(new HttpSample("haproxy", "c32", 0, Wrk(10_000, 20_000, p50: 1000), new CpuTimes(0.25, 0.25), 15 * MiB));

        var markdown = report.Render();

        Assert.DoesNotContain("## Targets", markdown, StringComparison.Ordinal);
        Assert.Contains("## c32: 32 keep-alive connections", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("## c1:", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_WithSyscallCounts_AddsPerRequestColumn()
    {
        var report = new HttpReport(E2eOptions.Parse(["--scenario", "http", "--variants", "c32", "--repeat", "1", "--syscalls"]));
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddSample(new HttpSample("haproxy", "c32", 0, Wrk(10_000, 20_000, p50: 1000), new CpuTimes(0.25, 0.25), 15 * MiB, Syscalls: new SyscallCounts(92_000, 0)));

        var markdown = report.Render();

        Assert.Contains("| haproxy | 10000 | baseline | 1000 | 2000 | – | 25.0 | 12.5 | 12.5 | baseline | 15.0 | – | 4.6 | 1/1 |", markdown, StringComparison.Ordinal);
        Assert.Contains("haproxy,c32,1,1,20000,2.000,10000.00,1000.0,,,2000.0,0.250,0.250,15728640,,0,0,0,0,0,92000", report.RenderCsv(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("c32", 32, false)]
    [InlineData("c1", 1, false)]
    [InlineData("close", 32, true)]
    [InlineData("c32cpu", 32, false)]
    [InlineData("closecpu", 32, true)]
    public void CreateRequest_EveryVariant_MapsToConnectionsAndClose(string variant, int connections, bool close)
    {
        var peer = new DirectPeer();
        peer.Launch(new PeerConfig(ProxyProtocol.Http1, new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 40001)));

        var request = HttpScenario.CreateRequest(variant, peer, TimeSpan.FromSeconds(2));

        Assert.Equal(connections, request.Connections);
        Assert.Equal(close, request.ConnectionClose);
        Assert.Equal(TimeSpan.FromSeconds(2), request.Duration);
        Assert.Equal(peer.ListenEndPoint, request.Target);
    }

    [Fact]
    public void HttpSample_PerRequestFigures_DivideByCompletedRequests()
    {
        var sample = new HttpSample("sidecar-aot", "c32", 0, Wrk(10_000, 40_000, p50: 100), new CpuTimes(0.1, 0.3), 1, AllocatedBytes: 80_000);

        Assert.Equal(10.0, sample.CpuMicrosecondsPerRequest!.Value, 9);
        Assert.Equal(2.5, sample.UserMicrosecondsPerRequest!.Value, 9);
        Assert.Equal(7.5, sample.SystemMicrosecondsPerRequest!.Value, 9);
        Assert.Equal(2.0, sample.AllocatedBytesPerRequest!.Value, 9);
    }

    private static WrkResult Wrk(double requestsPerSecond, long requests, double p50, long non2xx = 0) =>
        new(requests, 2.0, requestsPerSecond, p50, null, null, 2000, default, non2xx, string.Empty);
}

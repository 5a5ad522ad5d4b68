using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e.Scenarios;

public sealed class L4ReportTests
{
    [Fact]
    public void Render_TwoRounds_RatiosArePairedPerRoundAgainstHaproxy()
    {
        var options = E2eOptions.Parse(["--variants", "forward", "--repeat", "2"]);
        var report = new L4Report(options);
        var build = new SidecarBuild(SidecarFlavor.Aot, "/x/sidecar", 3 << 20, TimeSpan.FromSeconds(40));
        report.AddPeer(new DirectPeer());
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "auto", "/tmp"));
        report.AddPeer(new SidecarPeer("sidecar-aot", build, [], "/tmp"));
        report.AddBuild(build);

        // Round 0: sidecar 2x HAProxy's throughput, half its CPU/GB; round 1: 4x and a quarter.
        report.AddThroughput(new ThroughputSample("haproxy", "forward", 0, 5.0, 2_000_000_000, 2.0, 14 << 20, UserCpuSeconds: 0.5));
        report.AddThroughput(new ThroughputSample("sidecar-aot", "forward", 0, 10.0, 2_000_000_000, 1.0, 8 << 20));
        report.AddThroughput(new ThroughputSample("haproxy", "forward", 1, 2.5, 1_000_000_000, 1.0, 14 << 20, UserCpuSeconds: 0.25));
        report.AddThroughput(new ThroughputSample("sidecar-aot", "forward", 1, 10.0, 1_000_000_000, 0.25, 8 << 20));
        report.AddThroughput(new ThroughputSample("direct", "forward", 0, 20.0, 4_000_000_000, null, null));
        report.AddStartup(new StartupSample("sidecar-aot", 0, TimeSpan.FromMilliseconds(6), TimeSpan.FromMilliseconds(7), 5 << 20));
        report.AddFailure("sidecar-jit", "not built: boom\nline two");

        var markdown = report.Render();

        // CPU/GB: HAProxy 1.000 both rounds; sidecar 0.5 and 0.25 -> ratios 0.50 and 0.25, median 0.375.
        Assert.Contains("| haproxy | 3.75 (2.50–5.00) | baseline | 1.000 | baseline | 25 | 14.0 | 2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-aot | 10.00 | 3.00 (2.00–4.00) | 0.375 (0.250–0.500) | 0.38 (0.25–0.50) | – | 8.0 | 2 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| direct | 20.00 | 4.00 | – | – | – | – | 1 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-aot | 6.0 | 7.0 | 5.0 | 1 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| Aot | 40 s | 3.0 MiB |", markdown, StringComparison.Ordinal);
        Assert.Contains("- **sidecar-jit**: not built: boom", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("syscalls/MB", markdown, StringComparison.Ordinal);

        var csv = report.RenderCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(7, csv.Length);
        Assert.Contains("throughput,haproxy,forward,1,5.0000,2000000000,2.000,0.500,14680064,,,,,", csv);
        Assert.Contains("startup,sidecar-aot,,1,,,,,,,,6.00,7.00,5242880", csv);
    }

    [Fact]
    public void Render_WithSyscallCounts_AddsPerMegabyteAndSpliceShareColumns()
    {
        var options = E2eOptions.Parse(["--variants", "reverse", "--repeat", "1", "--syscalls"]);
        var report = new L4Report(options);
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "always", "/tmp"));
        report.AddThroughput(new ThroughputSample("haproxy", "reverse", 0, 5.0, 2_000_000_000, 0.5, 14 << 20, new SyscallCounts(40_000, 30_000)));

        var markdown = report.Render();

        Assert.Contains("| haproxy | 5.00 | baseline | 0.250 | baseline | – | 14.0 | 20.0 | 75 | 1 |", markdown, StringComparison.Ordinal);
    }
}

using System.Globalization;
using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e.Scenarios;

public sealed class H2ReportTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Render_TwoRounds_PairsRatiosPerRoundAndLeavesInvalidRunsOut()
    {
        var options = E2eOptions.Parse(["--scenario", "h2", "--variants", "c16m10", "--repeat", "3"]);
        var report = new H2Report(options);
        var build = new SidecarBuild(SidecarFlavor.Aot, "/x/sidecar", 3 << 20, TimeSpan.FromSeconds(40));
        report.AddPeer(new NghttpdPeer("/usr/sbin/nghttpd", "nghttpd 1.52.0", "/tmp"));
        report.AddPeer(new HaproxyPeer("/usr/sbin/haproxy", "HAProxy 2.6.12", "off", "/tmp"));
        report.AddPeer(new SidecarPeer("sidecar-aot", build, [], "/tmp"));
        report.AddBuild(build);

        // HAProxy: 25 us/req over 20000 requests; the sidecar 20 us/req and 1.2x / 1.3x the req/s.
        report.AddSample(new H2Sample("direct", "c16m10", 0, Result(50_000, 100_000, mean: 300), null, null));
        for (var round = 0; round < 3; round++)
        {
            report.AddSample(new H2Sample("haproxy", "c16m10", round, Result(10_000, 20_000, mean: 1000), new CpuTimes(0.25, 0.25), 15 * MiB));
        }

        report.AddSample(new H2Sample("sidecar-aot", "c16m10", 0, Result(12_000, 25_000, mean: 900), new CpuTimes(0.125, 0.375), 20 * MiB, AllocatedBytes: 5000));
        report.AddSample(new H2Sample("sidecar-aot", "c16m10", 1, Result(13_000, 25_000, mean: 1100), new CpuTimes(0.125, 0.375), 22 * MiB, AllocatedBytes: 0));
        report.AddSample(new H2Sample("sidecar-aot", "c16m10", 2, Result(99_000, 25_000, mean: 1, errored: 7), new CpuTimes(0.125, 0.375), 90 * MiB));

        var markdown = report.Render();

        Assert.Contains("| direct | 50000 | 5.00 | 300 | 100 | 5000 | – | – | – | – | – | – | 1/1 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| haproxy | 10000 | baseline | 1000 | 100 | 5000 | 25.0 | 12.5 | 12.5 | baseline | 15.0 | – | 3/3 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| sidecar-aot | 12500 (12000–13000) | 1.25 (1.20–1.30) | 1000 (900–1100) | 100 | 5000 | 20.0 | 5.0 | 15.0 | 0.80 | 21.0 (20.0–22.0) | 0.1 (0.0–0.2) | 2/3 |", markdown, StringComparison.Ordinal);
        Assert.Contains("- sidecar-aot, c16m10, round 3: 7 failed, 7 errored, 0 timeout (25000 done, 24993 succeeded, 99000 req/s)", markdown, StringComparison.Ordinal);
        Assert.Contains("## c16m10: 16 connections x 10 streams", markdown, StringComparison.Ordinal);
        Assert.Contains("it prints min, max, mean and sd only", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("## c1m1", markdown, StringComparison.Ordinal);

        var csv = report.RenderCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(8, csv.Length); // header + 7 samples
        Assert.Contains("sidecar-aot,c16m10,1,1,25000,25000,0,0,0,25000,0,0,0,2.000,12000.00,50.0,5000.0,900.0,100.0,0.125,0.375,20971520,5000", csv);
        Assert.Contains("direct,c16m10,1,1,100000,100000,0,0,0,100000,0,0,0,2.000,50000.00,50.0,5000.0,300.0,100.0,,,,", csv);
    }

    private static H2loadResult Result(double rate, long done, double mean, long errored = 0)
    {
        var succeeded = done - errored;
        var raw = string.Create(CultureInfo.InvariantCulture, $"requests: {done} total");
        return new H2loadResult(2.0, rate, done, done, done, succeeded, errored, errored, 0, succeeded, 0, 0, 0, 50, 5000, mean, 100, "h2c", raw);
    }
}

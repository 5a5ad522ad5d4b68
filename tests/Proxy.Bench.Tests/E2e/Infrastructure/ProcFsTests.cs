using System.Diagnostics;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class ProcFsTests
{
    [Fact]
    public void ReadCpuSeconds_AfterBusyWork_Increases()
    {
        var pid = Environment.ProcessId;
        var before = ProcFs.ReadCpuSeconds(pid);

        // Burn CPU until /proc shows at least two clock ticks more (bounded at 10 s of wall time).
        var watch = Stopwatch.StartNew();
        double after;
        ulong spin = 0;
        do
        {
            for (var i = 0; i < 1_000_000; i++)
            {
                spin = (spin * 6364136223846793005UL) + 1442695040888963407UL;
            }

            after = ProcFs.ReadCpuSeconds(pid);
        }
        while (after - before < 0.02 && watch.Elapsed < TimeSpan.FromSeconds(10));

        Assert.True(after - before >= 0.02, $"CPU went from {before} to {after} s (spin {spin})");
    }

    [Fact]
    public void ReadRssBytes_OwnProcess_IsPlausibleAndBelowPeak()
    {
        var pid = Environment.ProcessId;
        ProcFs.ResetPeakRss(pid);
        var rss = ProcFs.ReadRssBytes(pid);
        var peak = ProcFs.ReadPeakRssBytes(pid);

        Assert.InRange(rss, 1L << 20, 64L << 30);
        Assert.True(peak >= rss / 2, $"peak {peak} vs rss {rss}");
    }

    [Fact]
    public void ReadCpuSeconds_NoSuchProcess_Throws()
    {
        Assert.ThrowsAny<IOException>(() => ProcFs.ReadCpuSeconds(int.MaxValue));
    }
}

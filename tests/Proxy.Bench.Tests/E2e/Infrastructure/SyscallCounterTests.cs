using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class SyscallCounterTests
{
    [Fact]
    public void Parse_PerfCsv_ReadsTotalAndSplice()
    {
        const string csv = """
            # started on Thu Nov 26 07:27:16 2026

            41234,,raw_syscalls:sys_enter,4095586890,100.00,,
            30185,,syscalls:sys_enter_splice,4095586890,100.00,,
            """;

        Assert.Equal(new SyscallCounts(41_234, 30_185), SyscallCounter.Parse(csv));
    }

    [Fact]
    public void Parse_CountersNotSupported_Throws()
    {
        const string csv = "<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n";

        Assert.Throws<E2eException>(() => SyscallCounter.Parse(csv));
    }

    [Fact]
    public async Task StartAsync_BusyChild_CountsItsSyscallsWhenPerfIsInstalled()
    {
        // Needs perf and root (tracepoints); the e2e run installs linux-perf only with --syscalls.
        if (ToolInstaller.Find("perf") is null || !Environment.IsPrivilegedProcess)
        {
            return;
        }

        var output = Path.Combine(Path.GetTempPath(), $"bench-test-{Guid.NewGuid():N}.csv");
        await using var child = ChildProcess.Start("busy", "/bin/sh", ["-c", "while :; do cat /proc/self/stat > /dev/null; done"]);
        try
        {
            await using var counter = await SyscallCounter.StartAsync(child.Id, output, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            var counts = await counter.StopAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));

            Assert.True(counts.Total > 0, $"total {counts.Total}");
            Assert.Equal(0, counts.Splice);
        }
        finally
        {
            File.Delete(output);
        }
    }
}

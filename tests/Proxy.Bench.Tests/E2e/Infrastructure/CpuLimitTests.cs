using System.Diagnostics;
using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class CpuLimitTests
{
    [SkippableFact]
    public void Confine_ThenRelease_MovesTheProcessInAndOutAndDisposeRemovesTheCgroup()
    {
        CpuLimit limit;
        try
        {
            limit = CpuLimit.Create(0.25);
        }
        catch (E2eException ex)
        {
            Skip.If(true, $"no cgroup CPU quota here: {ex.Message}");
            return;
        }

        using var sleeper = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        string directory;
        try
        {
            Assert.Contains("0.25 CPU", limit.Description, StringComparison.Ordinal);
            Assert.Contains("quota 25000 µs per 100000 µs period", limit.Description, StringComparison.Ordinal);

            limit.Confine(sleeper.Id);
            var inside = CpuLine(sleeper.Id);
            Assert.Contains($"/proxy-bench-{Environment.ProcessId}", inside, StringComparison.Ordinal);
            directory = FindDirectory(inside);
            var quota = File.Exists(Path.Join(directory, "cpu.max"))
                ? File.ReadAllText(Path.Join(directory, "cpu.max")).Trim()
                : File.ReadAllText(Path.Join(directory, "cpu.cfs_quota_us")).Trim();
            Assert.StartsWith("25000", quota, StringComparison.Ordinal);

            limit.Release(sleeper.Id);
            Assert.DoesNotContain("proxy-bench-", CpuLine(sleeper.Id), StringComparison.Ordinal);
        }
        finally
        {
            sleeper.Kill();
            sleeper.WaitForExit(10_000);
            limit.Dispose();
        }

        Assert.False(Directory.Exists(directory), $"{directory} is still there");
    }

    [SkippableFact]
    public void Confine_AProcessThatIsGone_NamesTheProcessAndTheCgroup()
    {
        CpuLimit limit;
        try
        {
            limit = CpuLimit.Create(0.5);
        }
        catch (E2eException ex)
        {
            Skip.If(true, $"no cgroup CPU quota here: {ex.Message}");
            return;
        }

        using (limit)
        {
            var error = Assert.Throws<E2eException>(() => limit.Confine(int.MaxValue));
            Assert.Contains($"cannot move process {int.MaxValue} into cgroup", error.Message, StringComparison.Ordinal);
        }
    }

    /// <summary>The process's line for the cpu controller (v1) or the unified hierarchy (v2) in /proc/PID/cgroup.</summary>
    private static string CpuLine(int pid)
    {
        var lines = File.ReadAllLines($"/proc/{pid}/cgroup");
        return lines.FirstOrDefault(l => l.Split(':', 3) is [_, var controllers, _] && controllers.Split(',').Contains("cpu"))
            ?? lines.First(l => l.StartsWith("0::", StringComparison.Ordinal));
    }

    /// <summary>The cgroup directory a /proc/PID/cgroup line names, under the mount of its hierarchy.</summary>
    private static string FindDirectory(string line)
    {
        var path = line.Split(':', 3)[2].TrimStart('/');
        var v1 = line.StartsWith("0::", StringComparison.Ordinal) ? null : "/sys/fs/cgroup/cpu";
        foreach (var root in new[] { v1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified", "/sys/fs/cgroup" })
        {
            if (root is not null && Directory.Exists(Path.Join(root, path)))
            {
                return Path.Join(root, path);
            }
        }

        throw new DirectoryNotFoundException($"no cgroup directory for '{line}'");
    }
}

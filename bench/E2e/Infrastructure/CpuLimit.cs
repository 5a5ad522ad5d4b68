using System.Globalization;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// A CPU limit for one process at a time, as Kubernetes gives a pod's sidecar container: a cgroup of the bench's own
/// (a child of the cgroup the bench runs in) with a CFS quota of <see cref="Cores"/> per 100 ms period (Kubernetes'
/// period). cgroup v1 (<c>cpu.cfs_quota_us</c>) or v2 (<c>cpu.max</c>), whichever holds the cpu controller.
/// <see cref="Confine"/> moves a whole process (every thread) in; <see cref="Release"/> moves it back to the bench's
/// cgroup; <see cref="Dispose"/> removes the cgroup (empty by then).
/// </summary>
internal sealed class CpuLimit : IDisposable
{
    /// <summary>The CFS period: Kubernetes' (the kubelet's default <c>cpuCFSQuotaPeriod</c>).</summary>
    public const int PeriodMicroseconds = 100_000;

    private readonly string _directory;
    private readonly string _home;

    private CpuLimit(double cores, string directory, string home, string hierarchy)
    {
        Cores = cores;
        _directory = directory;
        _home = home;
        Description = string.Create(
            CultureInfo.InvariantCulture,
            $"{cores:0.##} CPU (cgroup {hierarchy}, quota {QuotaMicroseconds(cores)} µs per {PeriodMicroseconds} µs period)");
    }

    public double Cores { get; }

    /// <summary>What the limit is and how it is applied, for the report.</summary>
    public string Description { get; }

    /// <summary>Creates the cgroup and sets its quota; throws <see cref="E2eException"/> saying why it cannot.</summary>
    public static CpuLimit Create(double cores)
    {
        var (mount, version) = FindCpuController()
            ?? throw new E2eException("no cgroup hierarchy with the cpu controller is mounted (/proc/self/mountinfo)");
        var own = OwnCgroup(version);
        var home = Path.Join(mount, own);
        var directory = Path.Join(home, $"proxy-bench-{Environment.ProcessId}");
        try
        {
            Directory.CreateDirectory(directory);
            if (version == 1)
            {
                File.WriteAllText(Path.Join(directory, "cpu.cfs_period_us"), PeriodMicroseconds.ToString(CultureInfo.InvariantCulture));
                File.WriteAllText(Path.Join(directory, "cpu.cfs_quota_us"), QuotaMicroseconds(cores).ToString(CultureInfo.InvariantCulture));
            }
            else
            {
                if (!File.Exists(Path.Join(directory, "cpu.max")))
                {
                    // v2 gives a child the cpu controller only when its parent delegates it.
                    File.WriteAllText(Path.Join(home, "cgroup.subtree_control"), "+cpu");
                }

                File.WriteAllText(Path.Join(directory, "cpu.max"), string.Create(CultureInfo.InvariantCulture, $"{QuotaMicroseconds(cores)} {PeriodMicroseconds}"));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryRemove(directory);
            throw new E2eException($"cannot set up a cgroup with a CPU quota in {home} (cgroup v{version}; needs root): {ex.Message}");
        }

        return new CpuLimit(cores, directory, home, $"v{version}");
    }

    /// <summary>Moves every thread of <paramref name="pid"/> under the limit.</summary>
    public void Confine(int pid) => Move(pid, _directory);

    /// <summary>Moves <paramref name="pid"/> back to the bench's own cgroup (no limit of ours).</summary>
    public void Release(int pid) => Move(pid, _home);

    public void Dispose() => TryRemove(_directory);

    private static int QuotaMicroseconds(double cores) => (int)Math.Round(cores * PeriodMicroseconds);

    private static void Move(int pid, string directory)
    {
        try
        {
            File.WriteAllText(Path.Join(directory, "cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new E2eException($"cannot move process {pid} into cgroup {directory}: {ex.Message}");
        }
    }

    private static void TryRemove(string directory)
    {
        try
        {
            // A cgroup is removed with rmdir (its control files are not real files).
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.WriteLine($"warning: could not remove cgroup {directory}: {ex.Message}");
        }
    }

    /// <summary>The mount point of the hierarchy with the cpu controller and its cgroup version; v1 is preferred.</summary>
    private static (string Mount, int Version)? FindCpuController()
    {
        (string, int)? v2 = null;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            // "36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:1 - cgroup cgroup rw,cpu": the optional fields end at " - ".
            var separator = line.IndexOf(" - ", StringComparison.Ordinal);
            if (separator < 0)
            {
                continue;
            }

            var before = line[..separator].Split(' ');
            var after = line[(separator + 3)..].Split(' ');
            if (before.Length < 5 || after.Length < 3 || before[3] != "/")
            {
                continue; // a bind mount of a sub-tree: paths from /proc/self/cgroup would not fit it
            }

            var mountPoint = before[4];
            if (after[0] == "cgroup" && after[2].Split(',').Contains("cpu"))
            {
                return (mountPoint, 1);
            }

            if (after[0] == "cgroup2" && File.Exists(Path.Join(mountPoint, "cgroup.controllers"))
                && File.ReadAllText(Path.Join(mountPoint, "cgroup.controllers")).Split(' ', '\n').Contains("cpu"))
            {
                v2 ??= (mountPoint, 2);
            }
        }

        return v2;
    }

    /// <summary>The bench's own cgroup path in the hierarchy (from /proc/self/cgroup), relative to its root.</summary>
    private static string OwnCgroup(int version)
    {
        foreach (var line in File.ReadLines("/proc/self/cgroup"))
        {
            // "hierarchy-id:controller-list:path"; v2's line is "0::path".
            var parts = line.Split(':', 3);
            if (parts.Length == 3 && (version == 2 ? parts[0] == "0" && parts[1].Length == 0 : parts[1].Split(',').Contains("cpu")))
            {
                return parts[2].TrimStart('/');
            }
        }

        throw new E2eException($"/proc/self/cgroup names no cgroup v{version} path with the cpu controller");
    }
}

using System.Globalization;
using System.Runtime.InteropServices;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// Reads a process's CPU time and memory from /proc. CPU is utime+stime (all threads of the process) plus
/// cutime+cstime (children it has waited for), in clock ticks converted to seconds.
/// </summary>
internal static partial class ProcFs
{
    private const int ScClkTck = 2;

    private static readonly double TicksPerSecond = ReadTicksPerSecond();

    /// <summary>CPU seconds used so far by the process and its reaped children.</summary>
    public static double ReadCpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");

        // The command name (field 2) is in parentheses and may contain spaces: fields after the last ')'.
        var rest = stat.AsSpan(stat.LastIndexOf(')') + 2);
        Span<Range> fields = stackalloc Range[20];
        var count = rest.Split(fields, ' ');
        if (count < 16)
        {
            throw new E2eException($"unexpected /proc/{pid}/stat format");
        }

        // rest[0] is field 3 (state): utime, stime, cutime, cstime are fields 14..17, i.e. rest[11..14].
        long ticks = 0;
        for (var i = 11; i <= 14; i++)
        {
            ticks += long.Parse(rest[fields[i]], NumberStyles.Integer, CultureInfo.InvariantCulture);
        }

        return ticks / TicksPerSecond;
    }

    /// <summary>Resets the peak RSS (VmHWM) of the process to its current RSS.</summary>
    public static void ResetPeakRss(int pid) => File.WriteAllText($"/proc/{pid}/clear_refs", "5");

    /// <summary>Peak resident set size since start or the last <see cref="ResetPeakRss"/>, in bytes.</summary>
    public static long ReadPeakRssBytes(int pid) => ReadStatusKilobytes(pid, "VmHWM:") * 1024;

    /// <summary>Current resident set size, in bytes.</summary>
    public static long ReadRssBytes(int pid) => ReadStatusKilobytes(pid, "VmRSS:") * 1024;

    private static long ReadStatusKilobytes(int pid, string key)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                var value = line.AsSpan(key.Length).Trim();
                var space = value.IndexOf(' ');
                return long.Parse(space < 0 ? value : value[..space], NumberStyles.Integer, CultureInfo.InvariantCulture);
            }
        }

        throw new E2eException($"/proc/{pid}/status has no {key}");
    }

    private static double ReadTicksPerSecond()
    {
        var ticks = SysConf(ScClkTck);
        return ticks > 0 ? ticks : 100;
    }

    [LibraryImport("libc", EntryPoint = "sysconf")]
    private static partial long SysConf(int name);
}

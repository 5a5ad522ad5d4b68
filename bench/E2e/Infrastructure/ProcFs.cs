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
    public static double ReadCpuSeconds(int pid) => ReadCpuTimes(pid).Total;

    /// <summary>User and system CPU seconds used so far by the process and its reaped children.</summary>
    public static CpuTimes ReadCpuTimes(int pid)
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
        var user = Field(rest, fields[11]) + Field(rest, fields[13]);
        var system = Field(rest, fields[12]) + Field(rest, fields[14]);
        return new CpuTimes(user / TicksPerSecond, system / TicksPerSecond);

        static long Field(ReadOnlySpan<char> text, Range range) => long.Parse(text[range], NumberStyles.Integer, CultureInfo.InvariantCulture);
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

/// <summary>CPU seconds in user and kernel mode.</summary>
internal readonly record struct CpuTimes(double User, double System)
{
    public double Total => User + System;

    public static CpuTimes operator -(CpuTimes after, CpuTimes before) => new(after.User - before.User, after.System - before.System);

    public static CpuTimes Subtract(CpuTimes after, CpuTimes before) => after - before;
}

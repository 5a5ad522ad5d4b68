using System.Globalization;
using System.Runtime.InteropServices;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>System calls a process made during a run: all of them, and splice(2) alone.</summary>
internal readonly record struct SyscallCounts(long Total, long Splice);

/// <summary>
/// Counts a running process's system calls with <c>perf stat -p PID</c> on the syscall tracepoints (all threads;
/// far less distortion than strace). Started before a run, stopped with SIGINT after it.
/// </summary>
internal sealed partial class SyscallCounter : IAsyncDisposable
{
    private const int SigInt = 2;
    private const string TotalEvent = "raw_syscalls:sys_enter";
    private const string SpliceEvent = "syscalls:sys_enter_splice";

    private readonly ChildProcess _perf;
    private readonly string _output;

    private SyscallCounter(ChildProcess perf, string output)
    {
        _perf = perf;
        _output = output;
    }

    public static ToolRequirement Requirement { get; } = new("perf", "linux-perf");

    /// <summary>Attaches to <paramref name="pid"/>; waits a moment so the counters are open before the run starts.</summary>
    public static async Task<SyscallCounter> StartAsync(int pid, string outputFile, CancellationToken cancellationToken)
    {
        var perf = ToolInstaller.Require("perf");
        string[] arguments = ["stat", "-x", ",", "-o", outputFile, "-e", TotalEvent, "-e", SpliceEvent, "-p", pid.ToString(CultureInfo.InvariantCulture)];
        var child = ChildProcess.Start("perf", perf, arguments);

        // perf prints nothing when its counters are attached; 300 ms is ample on an idle or busy 2-core machine.
        await Task.Delay(TimeSpan.FromMilliseconds(300), cancellationToken);
        if (child.HasExited)
        {
            throw new E2eException($"perf stat could not attach to pid {pid}: {await child.DescribeExitAsync()}");
        }

        return new SyscallCounter(child, outputFile);
    }

    /// <summary>Stops counting (SIGINT makes perf write its totals) and reads the counts.</summary>
    public async Task<SyscallCounts> StopAsync(CancellationToken cancellationToken)
    {
        if (Kill(_perf.Id, SigInt) != 0)
        {
            throw new E2eException($"cannot signal perf (pid {_perf.Id})");
        }

        await _perf.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        return Parse(await File.ReadAllTextAsync(_output, cancellationToken));
    }

    /// <summary>Reads perf's CSV (<c>value,unit,event,...</c>; comments start with '#').</summary>
    public static SyscallCounts Parse(string csv)
    {
        long? total = null;
        long? splice = null;
        foreach (var line in csv.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }

            var fields = line.Split(',');
            if (fields.Length < 3 || !long.TryParse(fields[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            {
                continue;
            }

            switch (fields[2])
            {
                case TotalEvent:
                    total = value;
                    break;
                case SpliceEvent:
                    splice = value;
                    break;
            }
        }

        if (total is null || splice is null)
        {
            throw new E2eException($"perf stat output has no counts for {TotalEvent} and {SpliceEvent}:\n{csv}");
        }

        return new SyscallCounts(total.Value, splice.Value);
    }

    public ValueTask DisposeAsync() => _perf.DisposeAsync();

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

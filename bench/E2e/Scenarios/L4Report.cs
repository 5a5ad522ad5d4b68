using System.Globalization;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>One iperf3 run through one peer. CPU and RSS are null for "direct" (no proxy process).</summary>
internal sealed record ThroughputSample(
    string Peer,
    string Variant,
    int Round,
    double Gbps,
    long Bytes,
    double? CpuSeconds,
    long? PeakRssBytes,
    SyscallCounts? Syscalls = null,
    double? UserCpuSeconds = null)
{
    /// <summary>Share of the proxy's CPU time spent in user mode, in percent.</summary>
    public double? UserPercent => CpuSeconds is > 0 && UserCpuSeconds is { } user ? 100.0 * user / CpuSeconds.Value : null;

    /// <summary>System calls of the proxy per 10^6 bytes moved (with --syscalls).</summary>
    public double? SyscallsPerMb => Syscalls is { } s ? s.Total / (Bytes / 1e6) : null;

    /// <summary>Share of the proxy's system calls that were splice(2), in percent (with --syscalls).</summary>
    public double? SplicePercent => Syscalls is { Total: > 0 } s ? 100.0 * s.Splice / s.Total : null;

    /// <summary>Proxy CPU seconds per 10^9 bytes moved.</summary>
    public double? CpuSecondsPerGb => CpuSeconds is { } cpu ? cpu / (Bytes / 1e9) : null;
}

/// <summary>One fresh start of a peer.</summary>
internal sealed record StartupSample(string Peer, int Round, TimeSpan ToReady, TimeSpan ToFirstByte, long IdleRssBytes);

/// <summary>Collects the L4 samples and renders the markdown report.</summary>
internal sealed class L4Report
{
    private const string Baseline = "haproxy";

    private readonly E2eOptions _options;
    private readonly List<ThroughputSample> _throughput = [];
    private readonly List<StartupSample> _startup = [];
    private readonly List<(string Peer, string Message)> _failures = [];
    private readonly List<IPeer> _peers = [];
    private readonly List<SidecarBuild> _builds = [];
    private readonly List<(string Name, string Value)> _environment = [];
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;

    public L4Report(E2eOptions options) => _options = options;

    public void AddThroughput(ThroughputSample sample) => _throughput.Add(sample);

    public void AddStartup(StartupSample sample) => _startup.Add(sample);

    public void AddFailure(string peer, string message) => _failures.Add((peer, message));

    public void AddPeer(IPeer peer) => _peers.Add(peer);

    public void AddBuild(SidecarBuild build)
    {
        if (!_builds.Contains(build))
        {
            _builds.Add(build);
        }
    }

    /// <summary>Kernel, CPU, .NET, iperf3 version and git commit, for the report header.</summary>
    public async Task CollectEnvironmentAsync(E2eContext context, CancellationToken cancellationToken)
    {
        _environment.Add(("kernel", (await TryReadAsync("/proc/sys/kernel/osrelease", cancellationToken)).Trim()));
        _environment.Add(("cpu", $"{Environment.ProcessorCount} x {CpuModel(await TryReadAsync("/proc/cpuinfo", cancellationToken))}"));
        _environment.Add((".NET runtime", Environment.Version.ToString()));
        var iperf = ToolInstaller.Find("iperf3");
        if (iperf is not null)
        {
            var version = await ProcessRunner.RunAsync(iperf, ["--version"], TimeSpan.FromSeconds(10), cancellationToken);
            _environment.Add(("iperf3", version.StandardOutput.Split('\n')[0].Trim()));
        }

        if (ToolInstaller.Find("git") is { } git)
        {
            var head = await ProcessRunner.RunAsync(git, ["-C", context.RepositoryRoot, "describe", "--always", "--dirty"], TimeSpan.FromSeconds(10), cancellationToken);
            _environment.Add(("commit", head.StandardOutput.Trim()));
        }

        var load = (await TryReadAsync("/proc/loadavg", cancellationToken)).Trim();
        _environment.Add(("load average at start", load));
    }

    public string Render()
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine("# L4 (opaque TCP): iperf3 through each peer");
        md.AppendLine();
        md.AppendLine(inv, $"Run {_started:yyyy-MM-dd HH:mm} UTC, {(DateTimeOffset.UtcNow - _started).TotalMinutes:F1} min. {_options.Repeat} interleaved rounds x {_options.Duration.TotalSeconds:0} s per run; start-up: {_options.StartupRepeat} fresh starts per peer.");
        md.AppendLine();
        foreach (var (name, value) in _environment)
        {
            md.AppendLine(inv, $"- {name}: {value}");
        }

        md.AppendLine(inv, $"- load average at end: {ReadLoadAverage()}");
        md.AppendLine();
        md.AppendLine("| peer | configuration |");
        md.AppendLine("| --- | --- |");
        foreach (var peer in _peers)
        {
            md.AppendLine(inv, $"| {peer.Name} | {peer.Description} |");
        }

        if (_builds.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("| sidecar build | publish time | published size (no symbols; JIT excludes the shared runtime) |");
            md.AppendLine("| --- | --- | --- |");
            foreach (var build in _builds)
            {
                md.AppendLine(inv, $"| {build.Flavor} | {build.PublishTime.TotalSeconds:F0} s | {build.PublishedBytes / 1048576.0:F1} MiB |");
            }
        }

        RenderThroughput(md);
        RenderStartup(md);
        RenderFailures(md, _failures);

        md.AppendLine();
        md.AppendLine("How to read: Gbit/s is iperf3's `end.sum_received` rate; CPU is the proxy process's utime+stime (+ reaped children)");
        md.AppendLine("from /proc/PID/stat around the run, per 10^9 bytes received; peak RSS is VmHWM after `echo 5 > clear_refs`");
        md.AppendLine("before each run. Ratios vs HAProxy are paired within the same round (same variant, neighbouring in time),");
        md.AppendLine("then summarised: throughput ratio > 1 is faster than HAProxy, CPU/GB ratio < 1 is cheaper. Start-up: from");
        md.AppendLine("process creation to the first 200 on the readiness endpoint (HAProxy: a monitor-uri frontend), and to the");
        md.AppendLine("first byte a client reads through the peer from a server-speaks-first target (polled every ~1 ms, in");
        md.AppendLine("parallel); idle RSS is VmRSS 0.5 s after both. Medians, (min–max) over the rounds.");
        return md.ToString();
    }

    private void RenderThroughput(StringBuilder md)
    {
        var inv = CultureInfo.InvariantCulture;
        foreach (var variant in _options.Variants)
        {
            var samples = _throughput.Where(s => s.Variant == variant).ToList();
            if (samples.Count == 0)
            {
                continue;
            }

            md.AppendLine();
            var title = variant switch
            {
                "forward" => "forward (client sends)",
                "reverse" => "reverse (-R, server sends)",
                _ => $"parallel (-P {_options.ParallelStreams}, client sends)",
            };
            md.AppendLine(inv, $"## Throughput, {title}");
            md.AppendLine();
            var withSyscalls = samples.Any(s => s.Syscalls.HasValue);
            md.AppendLine(withSyscalls
                ? "| peer | Gbit/s | vs HAProxy | proxy CPU s/GB | vs HAProxy | user % of CPU | peak RSS MiB | syscalls/MB | splice % of syscalls | runs |"
                : "| peer | Gbit/s | vs HAProxy | proxy CPU s/GB | vs HAProxy | user % of CPU | peak RSS MiB | runs |");
            md.AppendLine(withSyscalls ? "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" : "| --- | --- | --- | --- | --- | --- | --- | --- |");
            foreach (var peer in _peers)
            {
                var mine = samples.Where(s => s.Peer == peer.Name).ToList();
                if (mine.Count == 0)
                {
                    continue;
                }

                var gbps = Summary.Of(mine.Select(s => s.Gbps));
                var cpu = Summary.Of(mine.Where(s => s.CpuSecondsPerGb.HasValue).Select(s => s.CpuSecondsPerGb!.Value));
                var rss = Summary.Of(mine.Where(s => s.PeakRssBytes.HasValue).Select(s => s.PeakRssBytes!.Value / 1048576.0));
                var user = Summary.Of(mine.Where(s => s.UserPercent.HasValue).Select(s => s.UserPercent!.Value));
                var isBaseline = peer.Name == Baseline;
                var gbpsRatio = isBaseline ? "baseline" : PairedRatio(samples, peer.Name, s => s.Gbps).Format("F2");
                var cpuRatio = isBaseline ? "baseline" : PairedRatio(samples, peer.Name, s => s.CpuSecondsPerGb).Format("F2");
                var syscallColumns = string.Empty;
                if (withSyscalls)
                {
                    var perMb = Summary.Of(mine.Where(s => s.SyscallsPerMb.HasValue).Select(s => s.SyscallsPerMb!.Value));
                    var splice = Summary.Of(mine.Where(s => s.SplicePercent.HasValue).Select(s => s.SplicePercent!.Value));
                    syscallColumns = $" {perMb.Format("F1")} | {splice.Format("F0")} |";
                }

                md.AppendLine(inv, $"| {peer.Name} | {gbps.Format("F2")} | {gbpsRatio} | {cpu.Format("F3")} | {cpuRatio} | {user.Format("F0")} | {rss.Format("F1")} |{syscallColumns} {mine.Count} |");
            }
        }
    }

    /// <summary>Every sample, one line each, for analysis elsewhere.</summary>
    public string RenderCsv()
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder();
        csv.AppendLine("kind,peer,variant,round,gbps,bytes,cpu_s,user_cpu_s,peak_rss_bytes,syscalls,splice_calls,ready_ms,first_byte_ms,idle_rss_bytes");
        foreach (var s in _throughput)
        {
            csv.AppendLine(inv, $"throughput,{s.Peer},{s.Variant},{s.Round + 1},{s.Gbps:F4},{s.Bytes},{s.CpuSeconds:F3},{s.UserCpuSeconds:F3},{s.PeakRssBytes},{s.Syscalls?.Total},{s.Syscalls?.Splice},,,");
        }

        foreach (var s in _startup)
        {
            csv.AppendLine(inv, $"startup,{s.Peer},,{s.Round + 1},,,,,,,,{s.ToReady.TotalMilliseconds:F2},{s.ToFirstByte.TotalMilliseconds:F2},{s.IdleRssBytes}");
        }

        return csv.ToString();
    }

    private void RenderStartup(StringBuilder md)
    {
        if (_startup.Count == 0)
        {
            return;
        }

        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine("## Start-up (fresh process each time)");
        md.AppendLine();
        md.AppendLine("| peer | start → ready ms | start → first proxied byte ms | idle RSS MiB | starts |");
        md.AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var peer in _peers)
        {
            var mine = _startup.Where(s => s.Peer == peer.Name).ToList();
            if (mine.Count == 0)
            {
                continue;
            }

            var ready = Summary.Of(mine.Select(s => s.ToReady.TotalMilliseconds));
            var firstByte = Summary.Of(mine.Select(s => s.ToFirstByte.TotalMilliseconds));
            var rss = Summary.Of(mine.Select(s => s.IdleRssBytes / 1048576.0));
            md.AppendLine(inv, $"| {peer.Name} | {ready.Format("F1")} | {firstByte.Format("F1")} | {rss.Format("F1")} | {mine.Count} |");
        }
    }

    /// <summary>The "Failures" section shared by every scenario's report: first line inline, process output in a code block.</summary>
    internal static void RenderFailures(StringBuilder md, IReadOnlyList<(string Peer, string Message)> failures)
    {
        if (failures.Count == 0)
        {
            return;
        }

        md.AppendLine();
        md.AppendLine("## Failures");
        md.AppendLine();
        foreach (var (peer, message) in failures)
        {
            // Keep the table readable: first line inline, the rest (process output) in a code block.
            var lines = message.Split('\n');
            md.AppendLine(CultureInfo.InvariantCulture, $"- **{peer}**: {lines[0]}");
            if (lines.Length > 1)
            {
                md.AppendLine("  ```");
                foreach (var line in lines.Skip(1).TakeLast(15))
                {
                    md.AppendLine(CultureInfo.InvariantCulture, $"  {line}");
                }

                md.AppendLine("  ```");
            }
        }
    }

    /// <summary>Median (min–max) over rounds of value(peer) / value(HAProxy) in the same round; null without a baseline.</summary>
    private static Summary? PairedRatio(List<ThroughputSample> samples, string peer, Func<ThroughputSample, double?> value)
    {
        var ratios = new List<double>();
        foreach (var sample in samples.Where(s => s.Peer == peer))
        {
            var baseline = samples.FirstOrDefault(s => s.Peer == Baseline && s.Round == sample.Round);
            if (baseline is not null && value(sample) is { } mine && value(baseline) is { } theirs && theirs > 0)
            {
                ratios.Add(mine / theirs);
            }
        }

        return Summary.Of(ratios);
    }

    internal static string ReadLoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Trim();
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    internal static string CpuModel(string cpuinfo)
    {
        foreach (var line in cpuinfo.Split('\n'))
        {
            if (line.StartsWith("model name", StringComparison.Ordinal))
            {
                return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
            }
        }

        return "unknown cpu";
    }

    internal static async Task<string> TryReadAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            return await File.ReadAllTextAsync(path, cancellationToken);
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }
}

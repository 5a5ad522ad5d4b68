using System.Globalization;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// One h2load run through one peer. CPU and RSS are null for "direct" (nghttpd is the server, not a proxy);
/// allocated bytes are set for sidecar peers whose admin /metrics exports the allocation counter (one scrape's
/// cost already subtracted).
/// </summary>
internal sealed record H2Sample(
    string Peer,
    string Variant,
    int Round,
    H2loadResult H2load,
    CpuTimes? Cpu,
    long? PeakRssBytes,
    double? AllocatedBytes = null)
{
    public bool IsValid => H2load.IsValid;

    /// <summary>Requests the proxy's work is divided by: h2load's "done" (all succeeded in a valid run).</summary>
    public long Requests => H2load.Done;

    /// <summary>Proxy CPU time (user + system) per completed request, in microseconds.</summary>
    public double? CpuMicrosecondsPerRequest => PerRequest(Cpu?.Total * 1e6);

    public double? UserMicrosecondsPerRequest => PerRequest(Cpu?.User * 1e6);

    public double? SystemMicrosecondsPerRequest => PerRequest(Cpu?.System * 1e6);

    public double? AllocatedBytesPerRequest => PerRequest(AllocatedBytes);

    private double? PerRequest(double? value) => value is { } v && Requests > 0 ? v / Requests : null;
}

/// <summary>Collects the h2c samples and renders the markdown report and the CSV of every sample.</summary>
internal sealed class H2Report : IHttpPeerReport
{
    private const string Baseline = "haproxy";

    private readonly E2eOptions _options;
    private readonly List<H2Sample> _samples = [];
    private readonly List<(string Peer, string Message)> _failures = [];
    private readonly List<string> _notes = [];
    private readonly List<IPeer> _peers = [];
    private readonly List<SidecarBuild> _builds = [];
    private readonly List<(string Name, string Value)> _environment = [];
    private readonly Dictionary<string, double> _scrapeCosts = new(StringComparer.Ordinal);
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private string? _backend;

    public H2Report(E2eOptions options) => _options = options;

    public IReadOnlyList<H2Sample> Samples => _samples;

    public void AddSample(H2Sample sample) => _samples.Add(sample);

    public void AddFailure(string peer, string message) => _failures.Add((peer, message));

    public void AddNote(string note) => _notes.Add(note);

    public void AddPeer(IPeer peer) => _peers.Add(peer);

    public void SetBackend(string description) => _backend = description;

    /// <summary>Bytes one /metrics scrape allocates in <paramref name="peer"/>, subtracted from every run's delta.</summary>
    public void SetScrapeCost(string peer, double bytes) => _scrapeCosts[peer] = bytes;

    public bool HasScrapeCost(string peer) => _scrapeCosts.ContainsKey(peer);

    public double ScrapeCost(string peer) => _scrapeCosts.GetValueOrDefault(peer);

    public void AddBuild(SidecarBuild build)
    {
        if (!_builds.Contains(build))
        {
            _builds.Add(build);
        }
    }

    /// <summary>Kernel, CPU, .NET, h2load version, git commit and load, for the report header.</summary>
    public async Task CollectEnvironmentAsync(E2eContext context, CancellationToken cancellationToken)
    {
        _environment.Add(("kernel", (await L4Report.TryReadAsync("/proc/sys/kernel/osrelease", cancellationToken)).Trim()));
        _environment.Add(("cpu", $"{Environment.ProcessorCount} x {L4Report.CpuModel(await L4Report.TryReadAsync("/proc/cpuinfo", cancellationToken))}"));
        _environment.Add((".NET runtime", Environment.Version.ToString()));
        if (ToolInstaller.Find("h2load") is { } h2load)
        {
            var version = await ProcessRunner.RunAsync(h2load, ["--version"], TimeSpan.FromSeconds(10), cancellationToken);
            _environment.Add(("h2load", version.RecentOutput.Split('\n')[0].Trim()));
        }

        if (ToolInstaller.Find("git") is { } git)
        {
            var head = await ProcessRunner.RunAsync(git, ["-C", context.RepositoryRoot, "describe", "--always", "--dirty"], TimeSpan.FromSeconds(10), cancellationToken);
            _environment.Add(("commit", head.StandardOutput.Trim()));
        }

        _environment.Add(("load average at start", (await L4Report.TryReadAsync("/proc/loadavg", cancellationToken)).Trim()));
    }

    public string Render()
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine("# HTTP/2 (h2c): h2load through each peer");
        md.AppendLine();
        md.AppendLine(inv, $"Run {_started:yyyy-MM-dd HH:mm} UTC, {(DateTimeOffset.UtcNow - _started).TotalMinutes:F1} min. {_options.Repeat} interleaved rounds x {_options.Duration.TotalSeconds:0} s per h2load run, after {_options.Warmup.TotalSeconds:0} s of warm-up per proxy.");
        md.AppendLine();
        foreach (var (name, value) in _environment)
        {
            md.AppendLine(inv, $"- {name}: {value}");
        }

        md.AppendLine(inv, $"- load average at end: {L4Report.ReadLoadAverage()}");
        if (_backend is not null)
        {
            md.AppendLine(inv, $"- backend: {_backend}");
        }

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

        md.AppendLine();
        md.AppendLine("No numeric h2 targets yet: the tables are informational.");
        foreach (var variant in _options.Variants)
        {
            RenderVariant(md, variant);
        }

        RenderInvalid(md);
        L4Report.RenderFailures(md, _failures);
        if (_notes.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Notes");
            md.AppendLine();
            foreach (var note in _notes)
            {
                md.AppendLine(inv, $"- {note}");
            }
        }

        md.AppendLine();
        md.AppendLine("How to read: variants are `h2load -t1 -c16 -m10` (c16m10: 16 connections x 10 concurrent streams, the issue's");
        md.AppendLine("configuration) and `h2load -t1 -c1 -m1` (c1m1: one request at a time, latency), both h2c with prior knowledge,");
        md.AppendLine("time-based (`-D`), no in-run warm-up (a separate unrecorded h2load run per proxy comes first). req/s is h2load's");
        md.AppendLine("\"finished in\" rate. Latency is h2load's \"time for request\": it prints min, max, mean and sd only, no");
        md.AppendLine("percentiles, so the columns are mean, sd and max (medians over rounds of each). CPU is the proxy process's");
        md.AppendLine("utime (user) + stime (sys) from /proc/PID/stat around the run, per request done (connection set-up included).");
        md.AppendLine("Peak RSS is VmHWM after `echo 5 > clear_refs` before each run. Allocated B/req (sidecar only) is the change of");
        md.AppendLine("`proxy_process_allocated_bytes` on the admin /metrics around the run, minus one scrape's own allocation, per");
        md.AppendLine("request. direct is nghttpd serving the same 13 bytes itself (the nginx backend speaks HTTP/1.1 only): a");
        md.AppendLine("reference for h2load's own limits, not \"the same path minus the proxy\". Ratios vs HAProxy are paired within a");
        md.AppendLine("round (same variant, neighbouring in time): req/s ratio > 1 is faster, CPU ratio < 1 is cheaper. A run with any");
        md.AppendLine("failed, errored or timed-out request or any 4xx/5xx is invalid: left out of every figure and listed.");
        md.AppendLine("Medians, (min–max) over rounds.");
        return md.ToString();
    }

    /// <summary>Every sample, one line each (invalid ones too, marked), for analysis elsewhere.</summary>
    public string RenderCsv()
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder();
        csv.AppendLine("peer,variant,round,valid,done,succeeded,failed,errored,timeout,status_2xx,status_3xx,status_4xx,status_5xx,seconds,req_per_s,min_us,max_us,mean_us,sd_us,cpu_user_s,cpu_sys_s,peak_rss_bytes,allocated_bytes");
        foreach (var s in _samples)
        {
            var h = s.H2load;
            csv.AppendLine(inv, $"{s.Peer},{s.Variant},{s.Round + 1},{(s.IsValid ? 1 : 0)},{h.Done},{h.Succeeded},{h.Failed},{h.Errored},{h.Timeout},{h.Status2xx},{h.Status3xx},{h.Status4xx},{h.Status5xx},{h.Seconds:F3},{h.RequestsPerSecond:F2},{h.MinMicroseconds:F1},{h.MaxMicroseconds:F1},{h.MeanMicroseconds:F1},{h.SdMicroseconds:F1},{s.Cpu?.User:F3},{s.Cpu?.System:F3},{s.PeakRssBytes},{s.AllocatedBytes:F0}");
        }

        return csv.ToString();
    }

    private void RenderVariant(StringBuilder md, string variant)
    {
        var all = _samples.Where(s => s.Variant == variant).ToList();
        if (all.Count == 0)
        {
            return;
        }

        var valid = all.Where(s => s.IsValid).ToList();
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"## {Title(variant)}");
        md.AppendLine();
        md.AppendLine("| peer | req/s | vs HAProxy | mean µs | sd µs | max µs | CPU µs/req | user | sys | vs HAProxy | peak RSS MiB | alloc B/req | valid runs |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var peer in _peers)
        {
            var runs = all.Count(s => s.Peer == peer.Name);
            if (runs == 0)
            {
                continue;
            }

            var mine = valid.Where(s => s.Peer == peer.Name).ToList();
            var isBaseline = peer.Name == Baseline;
            var rps = Summary.Of(mine.Select(s => s.H2load.RequestsPerSecond));
            var mean = Summary.Of(mine.Select(s => s.H2load.MeanMicroseconds));
            var sd = Summary.Of(mine.Select(s => s.H2load.SdMicroseconds));
            var max = Summary.Of(mine.Select(s => s.H2load.MaxMicroseconds));
            var cpu = Summary.Of(Values(mine, s => s.CpuMicrosecondsPerRequest));
            var user = Summary.Of(Values(mine, s => s.UserMicrosecondsPerRequest));
            var sys = Summary.Of(Values(mine, s => s.SystemMicrosecondsPerRequest));
            var rss = Summary.Of(Values(mine, s => s.PeakRssBytes / 1048576.0));
            var alloc = Summary.Of(Values(mine, s => s.AllocatedBytesPerRequest));
            var rpsRatio = isBaseline ? "baseline" : PairedRatio(valid, peer.Name, s => s.H2load.RequestsPerSecond).Format("F2");
            var cpuRatio = isBaseline ? "baseline" : PairedRatio(valid, peer.Name, s => s.CpuMicrosecondsPerRequest).Format("F2");
            md.AppendLine(inv, $"| {peer.Name} | {rps.Format("F0")} | {rpsRatio} | {mean.Format("F0")} | {sd.Format("F0")} | {max.Format("F0")} | {cpu.Format("F1")} | {user.Format("F1")} | {sys.Format("F1")} | {cpuRatio} | {rss.Format("F1")} | {alloc.Format("F1")} | {mine.Count}/{runs} |");
        }
    }

    private void RenderInvalid(StringBuilder md)
    {
        var invalid = _samples.Where(s => !s.IsValid).ToList();
        if (invalid.Count == 0)
        {
            return;
        }

        md.AppendLine();
        md.AppendLine("## Invalid runs (left out)");
        md.AppendLine();
        foreach (var s in invalid)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"- {s.Peer}, {s.Variant}, round {s.Round + 1}: {s.H2load.InvalidReason} ({s.H2load.Done} done, {s.H2load.Succeeded} succeeded, {s.H2load.RequestsPerSecond:F0} req/s)");
        }
    }

    private static string Title(string variant) => variant switch
    {
        "c16m10" => "c16m10: 16 connections x 10 streams (throughput, CPU per request)",
        "c1m1" => "c1m1: 1 connection, 1 stream at a time (latency)",
        _ => variant,
    };

    private static IEnumerable<double> Values(List<H2Sample> samples, Func<H2Sample, double?> value)
    {
        foreach (var sample in samples)
        {
            if (value(sample) is { } v)
            {
                yield return v;
            }
        }
    }

    /// <summary>Median (min–max) over rounds of value(peer) / value(HAProxy) in the same round and variant.</summary>
    private static Summary? PairedRatio(List<H2Sample> valid, string peer, Func<H2Sample, double?> value)
    {
        var ratios = new List<double>();
        foreach (var sample in valid.Where(s => s.Peer == peer))
        {
            var baseline = valid.FirstOrDefault(s => s.Peer == Baseline && s.Round == sample.Round && s.Variant == sample.Variant);
            if (baseline is not null && value(sample) is { } mine && value(baseline) is { } theirs && theirs > 0)
            {
                ratios.Add(mine / theirs);
            }
        }

        return Summary.Of(ratios);
    }
}

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
internal sealed class H2Report(E2eOptions options) : HttpPeerReport(options)
{
    private const string Baseline = "haproxy";

    private readonly List<H2Sample> _samples = [];

    public IReadOnlyList<H2Sample> Samples => _samples;

    public void AddSample(H2Sample sample) => _samples.Add(sample);

    protected override async Task<(string Tool, string? Version)> ReadToolVersionAsync(CancellationToken cancellationToken)
    {
        if (ToolInstaller.Find("h2load") is not { } h2load)
        {
            return ("h2load", null);
        }

        var version = await ProcessRunner.RunAsync(h2load, ["--version"], TimeSpan.FromSeconds(10), cancellationToken);
        return ("h2load", version.RecentOutput.Split('\n')[0].Trim());
    }

    public string Render()
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        RenderHeader(md, "# HTTP/2 (h2c): h2load through each peer", string.Create(inv, $"Run {_started:yyyy-MM-dd HH:mm} UTC, {(DateTimeOffset.UtcNow - _started).TotalMinutes:F1} min. {_options.Repeat} interleaved rounds x {_options.Duration.TotalSeconds:0} s per h2load run, after {_options.Warmup.TotalSeconds:0} s of warm-up per proxy."));
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

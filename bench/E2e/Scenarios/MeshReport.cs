using System.Globalization;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// One wrk run through one two-hop peer. CPU and peak RSS are per hop (null for "direct", which has no proxy
/// process); the per-request CPU figures add both hops.
/// </summary>
internal sealed record MeshSample(
    string Peer,
    string Variant,
    int Round,
    WrkResult Wrk,
    CpuTimes? Hop1Cpu,
    CpuTimes? Hop2Cpu,
    long? Hop1PeakRssBytes,
    long? Hop2PeakRssBytes)
{
    public bool IsValid => Wrk.IsValid;

    /// <summary>Both hops' CPU time (user + system) per completed request, in microseconds.</summary>
    public double? CpuMicrosecondsPerRequest => Both(c => c.Total);

    public double? UserMicrosecondsPerRequest => Both(c => c.User);

    public double? SystemMicrosecondsPerRequest => Both(c => c.System);

    public double? Hop1CpuMicrosecondsPerRequest => PerRequest(Hop1Cpu?.Total * 1e6);

    public double? Hop2CpuMicrosecondsPerRequest => PerRequest(Hop2Cpu?.Total * 1e6);

    private double? Both(Func<CpuTimes, double> part) =>
        Hop1Cpu is { } one && Hop2Cpu is { } two ? PerRequest((part(one) + part(two)) * 1e6) : null;

    private double? PerRequest(double? value) => value is { } v && Wrk.Requests > 0 ? v / Wrk.Requests : null;
}

/// <summary>
/// Collects the two-hop mesh samples and renders the markdown report (per variant: throughput and latency, ratios
/// against both HAProxy pairs, CPU of both hops, peak RSS per hop; then what TLS between the hops costs each proxy)
/// and the CSV of every sample.
/// </summary>
internal sealed class MeshReport(E2eOptions options) : HttpPeerReport(options)
{
    public const string HaproxyTls = "haproxy-tls";
    public const string HaproxyPlain = "haproxy-plain";
    private const string Direct = "direct";

    private readonly List<MeshSample> _samples = [];

    public void AddSample(MeshSample sample) => _samples.Add(sample);

    protected override async Task<(string Tool, string? Version)> ReadToolVersionAsync(CancellationToken cancellationToken)
    {
        if (ToolInstaller.Find("wrk") is not { } wrk)
        {
            return ("wrk", null);
        }

        // wrk -v prints its version and usage, exiting 1.
        var version = await ProcessRunner.RunAsync(wrk, ["-v"], TimeSpan.FromSeconds(10), cancellationToken);
        return ("wrk", version.RecentOutput.Split('\n')[0].Trim());
    }

    public string Render()
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        RenderHeader(
            md,
            "# Two-hop mesh: wrk -> hop 1 -> hop 2 -> nginx",
            string.Create(inv, $"Run {_started:yyyy-MM-dd HH:mm} UTC, {(DateTimeOffset.UtcNow - _started).TotalMinutes:F1} min. {_options.Repeat} interleaved rounds x {_options.Duration.TotalSeconds:0} s per wrk run, after {_options.Warmup.TotalSeconds:0} s of warm-up per peer."));
        foreach (var variant in _options.Variants)
        {
            RenderVariant(md, variant);
        }

        RenderTlsCost(md);
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
        md.AppendLine("How to read: every peer but direct is two processes, `wrk -t1 ──► hop 1 ──► hop 2 ──► nginx`; hop 1 takes");
        md.AppendLine("plaintext HTTP/1.1 from wrk, hop 2 forwards HTTP/1.1 to nginx, and between the hops is plaintext or mutual TLS.");
        md.AppendLine("Variants: `wrk -t1 -c32` (c32, keep-alive: throughput, CPU per request) and `wrk -t1 -c1` (c1: latency), with");
        md.AppendLine("`--latency`. req/s is wrk's Requests/sec; p50/p99 its latency distribution; \"added p50\" is the peer's p50 minus");
        md.AppendLine("direct's p50 in the same round (what the two hops add). CPU is utime + stime from /proc/PID/stat of both hops");
        md.AppendLine("around the run, added, per request completed (hop 1 and hop 2 columns: each alone). Peak RSS is each hop's");
        md.AppendLine("VmHWM after `echo 5 > clear_refs` before the run. Ratios are paired within a round (same variant, neighbouring");
        md.AppendLine("in time), then summarised: req/s ratio > 1 is faster than that HAProxy pair, CPU ratio < 1 is cheaper. A run");
        md.AppendLine("with any socket error or non-2xx/3xx response is invalid: left out of every figure and listed. Medians,");
        md.AppendLine("(min–max) over rounds.");
        return md.ToString();
    }

    /// <summary>Every sample, one line each (invalid ones too, marked), for analysis elsewhere.</summary>
    public string RenderCsv()
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder();
        csv.AppendLine("peer,variant,round,valid,requests,seconds,req_per_s,p50_us,p75_us,p90_us,p99_us,hop1_cpu_user_s,hop1_cpu_sys_s,hop2_cpu_user_s,hop2_cpu_sys_s,hop1_peak_rss_bytes,hop2_peak_rss_bytes,connect_errors,read_errors,write_errors,timeout_errors,non_2xx_3xx");
        foreach (var s in _samples)
        {
            var w = s.Wrk;
            csv.AppendLine(inv, $"{s.Peer},{s.Variant},{s.Round + 1},{(s.IsValid ? 1 : 0)},{w.Requests},{w.Seconds:F3},{w.RequestsPerSecond:F2},{w.P50Microseconds:F1},{w.P75Microseconds:F1},{w.P90Microseconds:F1},{w.P99Microseconds:F1},{s.Hop1Cpu?.User:F3},{s.Hop1Cpu?.System:F3},{s.Hop2Cpu?.User:F3},{s.Hop2Cpu?.System:F3},{s.Hop1PeakRssBytes},{s.Hop2PeakRssBytes},{w.SocketErrors.Connect},{w.SocketErrors.Read},{w.SocketErrors.Write},{w.SocketErrors.Timeout},{w.Non2xx3xx}");
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
        md.AppendLine("| peer | req/s | vs haproxy-tls | vs haproxy-plain | p50 µs | p99 µs | added p50 µs | CPU µs/req (both hops) | hop 1 | hop 2 | user | sys | CPU vs haproxy-tls | peak RSS hop 1 MiB | peak RSS hop 2 MiB | valid runs |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var peer in _peers)
        {
            var runs = all.Count(s => s.Peer == peer.Name);
            if (runs == 0)
            {
                continue;
            }

            var mine = valid.Where(s => s.Peer == peer.Name).ToList();
            var rps = Summary.Of(mine.Select(s => s.Wrk.RequestsPerSecond));
            var p50 = Summary.Of(Values(mine, s => s.Wrk.P50Microseconds));
            var p99 = Summary.Of(Values(mine, s => s.Wrk.P99Microseconds));
            var added = peer.Name == Direct ? "–" : PairedDifference(valid, peer.Name, Direct, s => s.Wrk.P50Microseconds).Format("F0");
            var cpu = Summary.Of(Values(mine, s => s.CpuMicrosecondsPerRequest));
            var hop1 = Summary.Of(Values(mine, s => s.Hop1CpuMicrosecondsPerRequest));
            var hop2 = Summary.Of(Values(mine, s => s.Hop2CpuMicrosecondsPerRequest));
            var user = Summary.Of(Values(mine, s => s.UserMicrosecondsPerRequest));
            var sys = Summary.Of(Values(mine, s => s.SystemMicrosecondsPerRequest));
            var rss1 = Summary.Of(Values(mine, s => s.Hop1PeakRssBytes / 1048576.0));
            var rss2 = Summary.Of(Values(mine, s => s.Hop2PeakRssBytes / 1048576.0));
            var vsTls = Ratio(valid, peer.Name, HaproxyTls, s => s.Wrk.RequestsPerSecond);
            var vsPlain = Ratio(valid, peer.Name, HaproxyPlain, s => s.Wrk.RequestsPerSecond);
            var cpuVsTls = peer.Name == Direct ? "–" : Ratio(valid, peer.Name, HaproxyTls, s => s.CpuMicrosecondsPerRequest);
            md.AppendLine(inv, $"| {peer.Name} | {rps.Format("F0")} | {vsTls} | {vsPlain} | {p50.Format("F0")} | {p99.Format("F0")} | {added} | {cpu.Format("F1")} | {hop1.Format("F1")} | {hop2.Format("F1")} | {user.Format("F1")} | {sys.Format("F1")} | {cpuVsTls} | {rss1.Format("F1")} | {rss2.Format("F1")} | {mine.Count}/{runs} |");
        }
    }

    /// <summary>
    /// Each proxy's TLS pair against its plaintext pair, paired per round: req/s ratio, CPU µs/req and p50 added by
    /// TLS between the hops. Rows only for proxies with both peers measured.
    /// </summary>
    private void RenderTlsCost(StringBuilder md)
    {
        (string Proxy, string Tls, string Plain)[] pairs = [("HAProxy", HaproxyTls, HaproxyPlain), ("sidecar", "sidecar-mtls", "sidecar-plain")];
        var valid = _samples.Where(s => s.IsValid).ToList();
        var rows = new List<string>();
        var inv = CultureInfo.InvariantCulture;
        foreach (var variant in _options.Variants)
        {
            var mine = valid.Where(s => s.Variant == variant).ToList();
            foreach (var (proxy, tls, plain) in pairs)
            {
                if (!mine.Any(s => s.Peer == tls) || !mine.Any(s => s.Peer == plain))
                {
                    continue;
                }

                var rps = PairedRatio(mine, tls, plain, s => s.Wrk.RequestsPerSecond).Format("F2");
                var cpu = PairedDifference(mine, tls, plain, s => s.CpuMicrosecondsPerRequest).Format("F1");
                var p50 = PairedDifference(mine, tls, plain, s => s.Wrk.P50Microseconds).Format("F0");
                rows.Add(string.Create(inv, $"| {variant} | {proxy} ({tls} vs {plain}) | {rps} | {cpu} | {p50} |"));
            }
        }

        if (rows.Count == 0)
        {
            return;
        }

        md.AppendLine();
        md.AppendLine("## What TLS between the hops costs (TLS pair vs the same proxy's plaintext pair, same round)");
        md.AppendLine();
        md.AppendLine("The plaintext pairs speak HTTP/1.1 between the hops; haproxy-tls offers the ALPN of `--haproxy-alpn` (h2 by");
        md.AppendLine("default) and sidecar-mtls carries HTTP/1.1 as HTTP/2 (the mesh's default `mesh.http2`): with h2 the figures");
        md.AppendLine("are TLS plus the change to one multiplexed connection, not TLS alone.");
        md.AppendLine();
        md.AppendLine("| variant | proxy | req/s ratio | CPU µs/req added (both hops) | p50 µs added |");
        md.AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var row in rows)
        {
            md.AppendLine(row);
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
            md.AppendLine(CultureInfo.InvariantCulture, $"- {s.Peer}, {s.Variant}, round {s.Round + 1}: {s.Wrk.InvalidReason} ({s.Wrk.Requests} requests, {s.Wrk.RequestsPerSecond:F0} req/s)");
        }
    }

    private static string Title(string variant) => variant switch
    {
        "c32" => "c32: 32 keep-alive connections (throughput, CPU per request)",
        "c1" => "c1: 1 keep-alive connection (latency)",
        _ => variant,
    };

    /// <summary>"baseline" for the baseline itself, else the paired ratio.</summary>
    private static string Ratio(List<MeshSample> valid, string peer, string baseline, Func<MeshSample, double?> value) =>
        peer == baseline ? "baseline" : PairedRatio(valid, peer, baseline, value).Format("F2");

    private static IEnumerable<double> Values(List<MeshSample> samples, Func<MeshSample, double?> value)
    {
        foreach (var sample in samples)
        {
            if (value(sample) is { } v)
            {
                yield return v;
            }
        }
    }

    /// <summary>Median (min–max) over rounds of value(peer) / value(baseline) in the same round and variant.</summary>
    private static Summary? PairedRatio(List<MeshSample> valid, string peer, string baseline, Func<MeshSample, double?> value) =>
        Paired(valid, peer, baseline, value, (mine, theirs) => theirs > 0 ? mine / theirs : double.NaN);

    /// <summary>Median (min–max) over rounds of value(peer) − value(baseline) in the same round and variant.</summary>
    private static Summary? PairedDifference(List<MeshSample> valid, string peer, string baseline, Func<MeshSample, double?> value) =>
        Paired(valid, peer, baseline, value, (mine, theirs) => mine - theirs);

    private static Summary? Paired(List<MeshSample> valid, string peer, string baseline, Func<MeshSample, double?> value, Func<double, double, double> combine)
    {
        var results = new List<double>();
        foreach (var sample in valid.Where(s => s.Peer == peer))
        {
            var other = valid.FirstOrDefault(s => s.Peer == baseline && s.Round == sample.Round && s.Variant == sample.Variant);
            if (other is not null && value(sample) is { } mine && value(other) is { } theirs)
            {
                results.Add(combine(mine, theirs));
            }
        }

        return Summary.Of(results);
    }
}

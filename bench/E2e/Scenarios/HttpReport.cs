using System.Globalization;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// One wrk run through one peer. CPU and RSS are null for "direct" (no proxy process); allocated bytes are set for
/// sidecar peers whose admin /metrics exports the allocation counter (scrape cost already subtracted).
/// </summary>
internal sealed record HttpSample(
    string Peer,
    string Variant,
    int Round,
    WrkResult Wrk,
    CpuTimes? Cpu,
    long? PeakRssBytes,
    double? AllocatedBytes = null,
    SyscallCounts? Syscalls = null,
    double? SteadyAllocatedBytesPerRequest = null)
{
    public bool IsValid => Wrk.IsValid;

    /// <summary>Proxy CPU time (user + system) per completed request, in microseconds.</summary>
    public double? CpuMicrosecondsPerRequest => PerRequest(Cpu?.Total * 1e6);

    public double? UserMicrosecondsPerRequest => PerRequest(Cpu?.User * 1e6);

    public double? SystemMicrosecondsPerRequest => PerRequest(Cpu?.System * 1e6);

    public double? AllocatedBytesPerRequest => PerRequest(AllocatedBytes);

    /// <summary>System calls of the proxy per request (with --syscalls).</summary>
    public double? SyscallsPerRequest => PerRequest(Syscalls?.Total);

    private double? PerRequest(double? value) => value is { } v && Wrk.Requests > 0 ? v / Wrk.Requests : null;
}

/// <summary>Collects the HTTP/1.1 samples and renders the markdown report and the CSV of every sample.</summary>
internal sealed class HttpReport(E2eOptions options) : HttpPeerReport(options)
{
    private const string Baseline = "haproxy";
    private const string Direct = "direct";

    /// <summary>The issue's peak-RSS target: 40 MB.</summary>
    private const double RssTargetBytes = 40e6;

    private readonly List<HttpSample> _samples = [];

    public void AddSample(HttpSample sample) => _samples.Add(sample);

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
        RenderHeader(md, "# HTTP/1.1: wrk through each peer", string.Create(inv, $"Run {_started:yyyy-MM-dd HH:mm} UTC, {(DateTimeOffset.UtcNow - _started).TotalMinutes:F1} min. {_options.Repeat} interleaved rounds x {_options.Duration.TotalSeconds:0} s per wrk run, after {_options.Warmup.TotalSeconds:0} s of warm-up per peer."));
        RenderTargets(md);
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
        md.AppendLine("How to read: variants are `wrk -t1 -c32` (c32, keep-alive), `wrk -t1 -c1` (c1, latency) and `wrk -t1 -c32");
        md.AppendLine("-H 'Connection: close'` (close, a new client connection per request), all with `--latency`; c32cpu and closecpu are");
        md.AppendLine("c32 and close with the proxy process moved into a cgroup with a CFS quota for the run (`--cpu-limit`, as a pod's");
        md.AppendLine("CPU limit on its sidecar): unlimited, wrk, the backend and the proxy share the machine's cores, so the rate follows the whole");
        md.AppendLine("machine and how busy the host is; at a limit the proxy reaches, the rate is the proxy's own. req/s is wrk's");
        md.AppendLine("Requests/sec; p50/p99 its latency distribution; \"added p50\" is the peer's p50 minus direct's p50 in the same");
        md.AppendLine("round. CPU is the proxy process's utime (user) + stime (sys) from /proc/PID/stat around the run, per request");
        md.AppendLine("completed. Peak RSS is VmHWM after `echo 5 > clear_refs` before each run. Allocated B/req (sidecar only) is the");
        md.AppendLine("change of `proxy_process_allocated_bytes` on the admin /metrics around the run, minus one scrape's own");
        md.AppendLine("allocation, per request: it includes setting up wrk's connections (a few KB each). The steady-state target");
        md.AppendLine("reads the same counter and the sidecar's `proxy_http_requests_total` at 30% and 80% of each keep-alive run,");
        md.AppendLine("after the connections are up: allocated bytes (minus one scrape) over requests served in that window.");
        md.AppendLine("syscalls/req (with --syscalls) counts raw_syscalls:sys_enter with `perf stat -p`.");
        md.AppendLine("Ratios vs HAProxy are paired within a round (same variant, neighbouring in time), then summarised: req/s");
        md.AppendLine("ratio > 1 is faster than HAProxy, CPU ratio < 1 is cheaper. A run with any socket error or non-2xx/3xx");
        md.AppendLine("response is invalid: left out of every figure and listed. Medians, (min–max) over rounds.");
        return md.ToString();
    }

    /// <summary>Every sample, one line each (invalid ones too, marked), for analysis elsewhere.</summary>
    public string RenderCsv()
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder();
        csv.AppendLine("peer,variant,round,valid,requests,seconds,req_per_s,p50_us,p75_us,p90_us,p99_us,cpu_user_s,cpu_sys_s,peak_rss_bytes,allocated_bytes,connect_errors,read_errors,write_errors,timeout_errors,non_2xx_3xx,syscalls,steady_allocated_bytes_per_request");
        foreach (var s in _samples)
        {
            var w = s.Wrk;
            csv.AppendLine(inv, $"{s.Peer},{s.Variant},{s.Round + 1},{(s.IsValid ? 1 : 0)},{w.Requests},{w.Seconds:F3},{w.RequestsPerSecond:F2},{w.P50Microseconds:F1},{w.P75Microseconds:F1},{w.P90Microseconds:F1},{w.P99Microseconds:F1},{s.Cpu?.User:F3},{s.Cpu?.System:F3},{s.PeakRssBytes},{s.AllocatedBytes:F0},{w.SocketErrors.Connect},{w.SocketErrors.Read},{w.SocketErrors.Write},{w.SocketErrors.Timeout},{w.Non2xx3xx},{s.Syscalls?.Total},{s.SteadyAllocatedBytesPerRequest:F2}");
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
        var withSyscalls = all.Any(s => s.Syscalls.HasValue);
        md.AppendLine(withSyscalls
            ? "| peer | req/s | vs HAProxy | p50 µs | p99 µs | added p50 µs | CPU µs/req | user | sys | vs HAProxy | peak RSS MiB | alloc B/req | syscalls/req | valid runs |"
            : "| peer | req/s | vs HAProxy | p50 µs | p99 µs | added p50 µs | CPU µs/req | user | sys | vs HAProxy | peak RSS MiB | alloc B/req | valid runs |");
        md.AppendLine(withSyscalls
            ? "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            : "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var peer in _peers)
        {
            var runs = all.Count(s => s.Peer == peer.Name);
            if (runs == 0)
            {
                continue;
            }

            var mine = valid.Where(s => s.Peer == peer.Name).ToList();
            var isBaseline = peer.Name == Baseline;
            var rps = Summary.Of(mine.Select(s => s.Wrk.RequestsPerSecond));
            var p50 = Summary.Of(Values(mine, s => s.Wrk.P50Microseconds));
            var p99 = Summary.Of(Values(mine, s => s.Wrk.P99Microseconds));
            var added = peer.Name == Direct ? "–" : AddedP50(valid, peer.Name).Format("F0");
            var cpu = Summary.Of(Values(mine, s => s.CpuMicrosecondsPerRequest));
            var user = Summary.Of(Values(mine, s => s.UserMicrosecondsPerRequest));
            var sys = Summary.Of(Values(mine, s => s.SystemMicrosecondsPerRequest));
            var rss = Summary.Of(Values(mine, s => s.PeakRssBytes / 1048576.0));
            var alloc = Summary.Of(Values(mine, s => s.AllocatedBytesPerRequest));
            var rpsRatio = isBaseline ? "baseline" : PairedRatio(valid, peer.Name, s => s.Wrk.RequestsPerSecond).Format("F2");
            var cpuRatio = isBaseline ? "baseline" : PairedRatio(valid, peer.Name, s => s.CpuMicrosecondsPerRequest).Format("F2");
            var syscallColumn = withSyscalls ? $" {Summary.Of(Values(mine, s => s.SyscallsPerRequest)).Format("F1")} |" : string.Empty;
            md.AppendLine(inv, $"| {peer.Name} | {rps.Format("F0")} | {rpsRatio} | {p50.Format("F0")} | {p99.Format("F0")} | {added} | {cpu.Format("F1")} | {user.Format("F1")} | {sys.Format("F1")} | {cpuRatio} | {rss.Format("F1")} | {alloc.Format("F1")} |{syscallColumn} {mine.Count}/{runs} |");
        }
    }

    /// <summary>The issue's targets for every sidecar peer, each with the measured figure (reported, not asserted).</summary>
    private void RenderTargets(StringBuilder md)
    {
        var sidecars = _peers.Where(p => p.Name.StartsWith("sidecar", StringComparison.Ordinal) && _samples.Any(s => s.Peer == p.Name)).ToList();
        if (sidecars.Count == 0)
        {
            return;
        }

        var inv = CultureInfo.InvariantCulture;
        var valid = _samples.Where(s => s.IsValid).ToList();
        md.AppendLine();
        md.AppendLine("## Targets (reported, not asserted)");
        md.AppendLine();
        md.AppendLine(inv, $"| target | {string.Join(" | ", sidecars.Select(p => p.Name))} |");
        md.AppendLine(inv, $"| --- |{string.Concat(sidecars.Select(_ => " --- |"))}");

        void Row(string target, Func<string, (string Text, bool? Met)> measure)
        {
            var cells = sidecars.Select(p =>
            {
                var (text, met) = measure(p.Name);
                return met switch
                {
                    true => $"{text} met",
                    false => $"{text} **missed**",
                    null => text,
                };
            });
            md.AppendLine(inv, $"| {target} | {string.Join(" | ", cells)} |");
        }

        Row("c32 req/s ≥ 1.15x HAProxy", peer => Check(PairedRatio(Of(valid, "c32"), peer, s => s.Wrk.RequestsPerSecond), r => r >= 1.15, "F2", "x"));
        Row("c32 CPU/req ≤ 0.85x HAProxy", peer => Check(PairedRatio(Of(valid, "c32"), peer, s => s.CpuMicrosecondsPerRequest), r => r <= 0.85, "F2", "x"));
        if (valid.Any(s => s.Variant == "c32cpu"))
        {
            Row("c32cpu req/s ≥ 1.15x HAProxy (both at the same CPU limit)", peer => Check(PairedRatio(Of(valid, "c32cpu"), peer, s => s.Wrk.RequestsPerSecond), r => r >= 1.15, "F2", "x"));
        }

        if (valid.Any(s => s.Variant == "closecpu"))
        {
            Row("closecpu req/s ≥ HAProxy's (both at the same CPU limit)", peer => Check(PairedRatio(Of(valid, "closecpu"), peer, s => s.Wrk.RequestsPerSecond), r => r >= 1.0, "F2", "x"));
        }

        Row("c1 added p50 ≤ HAProxy's", peer =>
        {
            var mine = AddedP50(Of(valid, "c1"), peer);
            var theirs = AddedP50(Of(valid, "c1"), Baseline);
            if (mine is not { } m || theirs is not { } t)
            {
                return ("–", null);
            }

            return (string.Create(inv, $"{m.Median:F0} µs vs {t.Median:F0} µs"), m.Median <= t.Median);
        });
        Row("close req/s ≥ HAProxy's", peer => Check(PairedRatio(Of(valid, "close"), peer, s => s.Wrk.RequestsPerSecond), r => r >= 1.0, "F2", "x"));
        Row("0 B allocated per request (keep-alive runs, < 1 B/req)", peer =>
        {
            var perRequest = Summary.Of(Values(valid.Where(s => s.Peer == peer && s.Variant is "c32" or "c1" or "c32cpu").ToList(), s => s.AllocatedBytesPerRequest));
            return Check(perRequest, b => b < 1, "F1", " B/req");
        });
        Row("0 B allocated per request in steady state (keep-alive, mid-run window, < 1 B/req)", peer =>
        {
            var perRequest = Summary.Of(Values(valid.Where(s => s.Peer == peer && s.Variant is "c32" or "c1" or "c32cpu").ToList(), s => s.SteadyAllocatedBytesPerRequest));
            return Check(perRequest, b => b < 1, "F2", " B/req");
        });
        Row("peak RSS under load ≤ 40 MB (38.1 MiB; max over runs)", peer =>
        {
            var peaks = valid.Where(s => s.Peer == peer && s.PeakRssBytes.HasValue).Select(s => s.PeakRssBytes!.Value).ToList();
            if (peaks.Count == 0)
            {
                return ("–", null);
            }

            var max = peaks.Max();
            return (string.Create(inv, $"{max / 1048576.0:F1} MiB"), max <= RssTargetBytes);
        });
    }

    private static (string Text, bool? Met) Check(Summary? value, Func<double, bool> target, string format, string unit) =>
        value is { } v ? (v.Median.ToString(format, CultureInfo.InvariantCulture) + unit, target(v.Median)) : ("–", null);

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
        "close" => "close: 32 connections, 'Connection: close' (connection rate)",
        "c32cpu" => "c32cpu: c32 with the proxy process held to a CPU limit (throughput of the proxy, not of the machine)",
        "closecpu" => "closecpu: close with the proxy process held to a CPU limit (connection rate of the proxy, not of the machine)",
        _ => variant,
    };

    private static List<HttpSample> Of(List<HttpSample> samples, string variant) => samples.Where(s => s.Variant == variant).ToList();

    private static IEnumerable<double> Values(List<HttpSample> samples, Func<HttpSample, double?> value)
    {
        foreach (var sample in samples)
        {
            if (value(sample) is { } v)
            {
                yield return v;
            }
        }
    }

    /// <summary>Median (min–max) over rounds of p50(peer) − p50(direct) in the same round and variant; null without direct.</summary>
    private static Summary? AddedP50(List<HttpSample> valid, string peer)
    {
        var added = new List<double>();
        foreach (var sample in valid.Where(s => s.Peer == peer))
        {
            var direct = valid.FirstOrDefault(s => s.Peer == Direct && s.Round == sample.Round && s.Variant == sample.Variant);
            if (direct?.Wrk.P50Microseconds is { } theirs && sample.Wrk.P50Microseconds is { } mine)
            {
                added.Add(mine - theirs);
            }
        }

        return Summary.Of(added);
    }

    /// <summary>Median (min–max) over rounds of value(peer) / value(HAProxy) in the same round and variant.</summary>
    private static Summary? PairedRatio(List<HttpSample> valid, string peer, Func<HttpSample, double?> value)
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

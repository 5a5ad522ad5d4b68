using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// HTTP/1.1: wrk through each peer to one nginx backend.
/// <code>
///  wrk -t1 ──► peer listener (127.0.0.1:free) ──► nginx backend, 1 worker, 13-byte body (127.0.0.1:free)
///              direct | haproxy | nginx | yarp | sidecar-jit | sidecar-aot
/// </code>
/// 1. The backend and every peer start once (peers in HTTP mode, keep-alive to the backend).
/// 2. Warm-up: <c>--warmup</c> seconds of wrk -c32 through each peer, not recorded (JIT tiering, pools, page faults).
/// 3. For each round, each variant (c32, c1, close, c32cpu, closecpu) and each peer (order rotated every round) one wrk run, with
///    the proxy's CPU time (user and system, /proc/PID/stat), peak RSS (VmHWM reset before the run) and, for the
///    sidecar, the process's allocated bytes (admin /metrics) around it; with <c>--syscalls</c> its system calls. A run with any socket error or any
///    non-2xx/3xx response is kept as invalid: listed, never averaged. In c32cpu and closecpu the proxy process is moved into a
///    cgroup with a CPU quota (<see cref="CpuLimit"/>) for the run and back after it: with client, backend and proxy
///    sharing the machine's cores, c32 measures the whole machine; a limit the proxy hits measures the proxy.
/// 4. Report: medians (min–max); ratios against HAProxy paired within the same round; added p50 latency against
///    direct in the same round; the targets checked for each sidecar peer.
/// </summary>
internal sealed class HttpScenario : IScenario
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);

    public string Name => "http";

    public IEnumerable<ToolRequirement> RequiredTools(E2eOptions options)
    {
        yield return WrkClient.Requirement;
        yield return NginxPeer.Requirement; // the backend, whatever the peers
        if (options.CountSyscalls)
        {
            yield return SyscallCounter.Requirement;
        }
        if (options.Peers.Contains("haproxy"))
        {
            yield return new ToolRequirement("haproxy", "haproxy");
        }
    }

    /// <summary>The wrk request for <paramref name="variant"/> (c32, c1, close, c32cpu, closecpu) against <paramref name="peer"/>.</summary>
    public static WrkRequest CreateRequest(string variant, IPeer peer, TimeSpan duration) => variant switch
    {
        "c32" or "c32cpu" => new WrkRequest(peer.ListenEndPoint, duration, 32, ConnectionClose: false),
        "c1" => new WrkRequest(peer.ListenEndPoint, duration, 1, ConnectionClose: false),
        "close" or "closecpu" => new WrkRequest(peer.ListenEndPoint, duration, 32, ConnectionClose: true),
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, "c32, c1, close, c32cpu or closecpu"),
    };

    /// <summary>The variants run with the proxy under <see cref="CpuLimit"/>.</summary>
    public static bool IsLimited(string variant) => variant is "c32cpu" or "closecpu";

    public async Task<ScenarioResult> RunAsync(E2eContext context, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var report = new HttpReport(options);
        await report.CollectEnvironmentAsync(context, cancellationToken);

        var nginx = ToolInstaller.Require("nginx");
        var nginxVersion = await NginxPeer.ReadVersionAsync(nginx, cancellationToken);
        var peers = await CreatePeersAsync(context, report, nginx, nginxVersion, cancellationToken);
        var backend = await NginxBackend.StartAsync(nginx, context.CreateWorkDirectory("backend"), cancellationToken);
        report.SetBackend($"{nginxVersion}, 1 worker, master_process off, {NginxBackend.Body.Length}-byte body, on {backend.EndPoint}");
        var variants = options.Variants.ToList();
        CpuLimit? limit = null;
        if (variants.Any(IsLimited))
        {
            try
            {
                limit = CpuLimit.Create(options.CpuLimit);
                report.AddNote($"c32cpu, closecpu: each proxy process held to {limit.Description} for its runs, moved back after each.");
            }
            catch (E2eException ex)
            {
                variants.RemoveAll(IsLimited);
                report.AddNote($"c32cpu and closecpu left out: {ex.Message}");
                Console.WriteLine($"c32cpu and closecpu left out: {ex.Message}");
            }
        }

        try
        {
            var config = new PeerConfig(ProxyProtocol.Http1, backend.EndPoint);
            var running = new List<IPeer>();
            foreach (var peer in peers)
            {
                try
                {
                    await peer.StartAsync(config, ReadyTimeout, cancellationToken);
                    running.Add(peer);
                }
                catch (E2eException ex)
                {
                    report.AddFailure(peer.Name, $"start: {ex.Message}");
                    Console.WriteLine($"  {peer.Name}: failed to start: {ex.Message}");
                }
            }

            var wrk = new WrkClient(ToolInstaller.Require("wrk"));
            await WarmUpAsync(wrk, running, options, report, cancellationToken);
            await HttpPeerSetup.MeasureScrapeCostsAsync(running, report, cancellationToken);
            var perfOutput = context.Temp.Combine("perf-stat.csv");

            var total = options.Repeat * variants.Count * running.Count;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"http: {running.Count} peers x {variants.Count} variants x {options.Repeat} rounds, {options.Duration.TotalSeconds:0} s each (~{total * (options.Duration.TotalSeconds + 0.5) / 60:F1} min)"));
            for (var round = 0; round < options.Repeat; round++)
            {
                foreach (var variant in variants)
                {
                    foreach (var peer in Rotate(running.ToList(), round))
                    {
                        if (IsLimited(variant) && peer.Process is null)
                        {
                            continue; // no proxy process to limit: it would be c32 again
                        }

                        if (!backend.IsRunning)
                        {
                            throw new E2eException($"the nginx backend died: {await backend.Process.DescribeExitAsync()}");
                        }

                        if (peer.Process is { HasExited: true } dead)
                        {
                            report.AddFailure(peer.Name, $"during the runs: {await dead.DescribeExitAsync()}");
                            running.Remove(peer);
                            continue;
                        }

                        await RunOneAsync(wrk, peer, variant, round, options, perfOutput, report, IsLimited(variant) ? limit : null, cancellationToken);
                    }
                }
            }
        }
        finally
        {
            foreach (var peer in peers)
            {
                await peer.DisposeAsync();
            }

            await backend.DisposeAsync();
            limit?.Dispose();
        }

        return new ScenarioResult(report.Render(), report.RenderCsv());
    }

    private static async Task<List<IPeer>> CreatePeersAsync(
        E2eContext context, HttpReport report, string nginx, string nginxVersion, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var peers = new List<IPeer>();
        if (options.Peers.Contains("direct"))
        {
            peers.Add(new DirectPeer());
        }

        await HttpPeerSetup.AddProxiesAsync(peers, context, report, nginx, nginxVersion, cancellationToken);
        return peers;
    }

    private static async Task WarmUpAsync(WrkClient wrk, List<IPeer> peers, E2eOptions options, HttpReport report, CancellationToken cancellationToken)
    {
        if (options.Warmup <= TimeSpan.Zero)
        {
            return;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up: {options.Warmup.TotalSeconds:0} s of wrk -c32 through each peer"));
        foreach (var peer in peers)
        {
            if (peer is DirectPeer)
            {
                continue;
            }

            try
            {
                var result = await wrk.RunAsync(CreateRequest("c32", peer, options.Warmup), cancellationToken);
                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"  {peer.Name,-12} {result.RequestsPerSecond,10:F0} req/s{(result.InvalidReason is { } why ? "  (" + why + ")" : string.Empty)}"));
            }
            catch (E2eException ex)
            {
                report.AddFailure(peer.Name, $"warm-up: {ex.Message}");
                Console.WriteLine($"  {peer.Name}: warm-up failed: {ex.Message}");
            }
        }
    }



    /// <summary>
    /// Bytes the sidecar allocated per request it served between 30% and 80% of a run: connection set-up (wrk's
    /// connections open at the start) is outside the window. Null when a scrape fails or no request was counted; also
    /// how many scrapes it made (they allocate in the sidecar during the run).
    /// </summary>
    private static async Task<(double? PerRequest, int Scrapes)> MeasureSteadyAllocationAsync(SidecarPeer sidecar, TimeSpan duration, double scrapeCost, CancellationToken cancellationToken)
    {
        var scrapes = 0;
        try
        {
            await Task.Delay(duration * 0.3, cancellationToken);
            var first = await PrometheusText.FetchAsync(sidecar.AdminEndPoint, "/metrics", cancellationToken);
            scrapes++;
            await Task.Delay(duration * 0.5, cancellationToken);
            var second = await PrometheusText.FetchAsync(sidecar.AdminEndPoint, "/metrics", cancellationToken);
            scrapes++;
            if (PrometheusText.TryGetValue(first, PrometheusText.AllocatedBytes) is not { } a1
                || PrometheusText.TryGetValue(second, PrometheusText.AllocatedBytes) is not { } a2
                || PrometheusText.TryGetValue(first, PrometheusText.HttpRequests) is not { } r1
                || PrometheusText.TryGetValue(second, PrometheusText.HttpRequests) is not { } r2
                || r2 <= r1)
            {
                return (null, scrapes);
            }

            return (Math.Max(0, a2 - a1 - scrapeCost) / (r2 - r1), scrapes);
        }
        catch (E2eException)
        {
            return (null, scrapes);
        }
    }

    private static async Task RunOneAsync(
        WrkClient wrk, IPeer peer, string variant, int round, E2eOptions options, string perfOutput, HttpReport report, CpuLimit? limit, CancellationToken cancellationToken)
    {
        var request = CreateRequest(variant, peer, options.Duration);
        var pid = peer.Process?.Id;
        var sidecar = peer as SidecarPeer;
        SyscallCounter? syscalls = null;
        var confined = false;
        try
        {
            if (limit is not null && pid is { } limited)
            {
                limit.Confine(limited);
                confined = true;
            }

            double? allocatedBefore = null;
            if (sidecar is not null && report.HasScrapeCost(peer.Name))
            {
                allocatedBefore = await HttpPeerSetup.ReadAllocatedBytesAsync(sidecar, cancellationToken);
            }

            var cpuBefore = default(CpuTimes);
            if (pid is { } p)
            {
                if (options.CountSyscalls)
                {
                    syscalls = await SyscallCounter.StartAsync(p, perfOutput, cancellationToken);
                }

                ProcFs.ResetPeakRss(p);
                cpuBefore = ProcFs.ReadCpuTimes(p);
            }

            // Keep-alive runs: a second allocation figure from a window inside the run, once wrk's connections are up.
            Task<(double? PerRequest, int Scrapes)>? steady = sidecar is not null && report.HasScrapeCost(peer.Name) && variant is "c32" or "c1" or "c32cpu"
                ? MeasureSteadyAllocationAsync(sidecar, options.Duration, report.ScrapeCost(peer.Name), cancellationToken)
                : null;
            var result = await wrk.RunAsync(request, cancellationToken);
            var (steadyPerRequest, steadyScrapes) = steady is null ? (null, 0) : await steady;
            CpuTimes? cpu = null;
            long? peakRss = null;
            SyscallCounts? counts = null;
            if (pid is { } q)
            {
                cpu = ProcFs.ReadCpuTimes(q) - cpuBefore;
                peakRss = ProcFs.ReadPeakRssBytes(q);
                if (syscalls is not null)
                {
                    counts = await syscalls.StopAsync(cancellationToken);
                }
            }

            double? allocated = null;
            if (sidecar is not null && allocatedBefore is { } before && await HttpPeerSetup.ReadAllocatedBytesAsync(sidecar, cancellationToken) is { } after)
            {
                // Our own scrapes inside the run (the steady-state window's) are not the proxy's work either.
                allocated = Math.Max(0, after - before - ((1 + steadyScrapes) * report.ScrapeCost(peer.Name)));
            }

            var sample = new HttpSample(peer.Name, variant, round, result, cpu, peakRss, allocated, counts, steadyPerRequest);
            report.AddSample(sample);
            Console.WriteLine(Describe(sample, options.Repeat));
        }
        catch (Exception ex) when (ex is E2eException or IOException)
        {
            report.AddFailure(peer.Name, $"{variant} round {round + 1}: {ex.Message}");
            Console.WriteLine($"  [{round + 1}/{options.Repeat}] {variant,-5} {peer.Name,-12} failed: {ex.Message}");
        }
        finally
        {
            if (syscalls is not null)
            {
                await syscalls.DisposeAsync();
            }

            if (confined && limit is not null && peer.Process is { HasExited: false } process)
            {
                try
                {
                    limit.Release(process.Id);
                }
                catch (E2eException ex)
                {
                    // The process may have exited since the check: its cgroup is then empty anyway.
                    report.AddFailure(peer.Name, $"{variant} round {round + 1}: {ex.Message}");
                }
            }
        }
    }

    private static string Describe(HttpSample sample, int repeat)
    {
        var inv = CultureInfo.InvariantCulture;
        var line = new System.Text.StringBuilder();
        line.Append(inv, $"  [{sample.Round + 1}/{repeat}] {sample.Variant,-5} {sample.Peer,-12} {sample.Wrk.RequestsPerSecond,9:F0} req/s");
        if (sample.Wrk.P50Microseconds is { } p50)
        {
            line.Append(inv, $"  p50 {p50,7:F0} us  p99 {sample.Wrk.P99Microseconds ?? double.NaN,7:F0} us");
        }

        if (sample.CpuMicrosecondsPerRequest is { } cpu)
        {
            line.Append(inv, $"  CPU {cpu,6:F1} us/req (user {sample.UserMicrosecondsPerRequest,5:F1})");
        }

        if (sample.PeakRssBytes is { } rss)
        {
            line.Append(inv, $"  {rss / 1048576.0,6:F1} MiB peak");
        }

        if (sample.SyscallsPerRequest is { } calls)
        {
            line.Append(inv, $"  {calls,5:F1} syscalls/req");
        }

        if (sample.AllocatedBytesPerRequest is { } alloc)
        {
            line.Append(inv, $"  {alloc,7:F1} B/req allocated");
        }

        if (sample.Wrk.InvalidReason is { } why)
        {
            line.Append(inv, $"  INVALID: {why}");
        }

        return line.ToString();
    }

    /// <summary>The list rotated left by <paramref name="round"/>, so no peer always runs first (or right after another).</summary>
    private static IEnumerable<T> Rotate<T>(List<T> items, int round)
    {
        for (var i = 0; i < items.Count; i++)
        {
            yield return items[(i + round) % items.Count];
        }
    }
}

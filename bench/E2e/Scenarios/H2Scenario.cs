using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// HTTP/2 cleartext (h2c, prior knowledge): h2load through each peer to the HTTP/1.1 nginx backend.
/// <code>
///  h2load -t1 ──h2c──► peer listener (127.0.0.1:free) ──HTTP/1.1──► nginx backend, 1 worker, 13-byte body
///                      haproxy | nginx | yarp | sidecar-jit | sidecar-aot
///  h2load -t1 ──h2c──► nghttpd (direct: no proxy, serves the same 13 bytes itself)
/// </code>
/// 1. The backend and every peer start once.
/// 2. Warm-up: <c>--warmup</c> seconds of h2load -c16 -m10 through each proxy, not recorded.
/// 3. For each round, each variant (c16m10, c1m1) and each peer (order rotated every round) one h2load run
///    (<c>-D</c>, no in-run warm-up, so the proxy's CPU around the run matches the requests h2load counts), with
///    the proxy's CPU time (user, system), peak RSS and, for the sidecar, its allocated bytes around it. A run
///    with any failed, errored or timed-out request or any 4xx/5xx is kept as invalid: listed, never averaged.
/// 4. Report: medians (min–max); ratios against HAProxy paired within the same round. No targets (informational).
/// </summary>
internal sealed class H2Scenario : IScenario
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);

    public string Name => "h2";

    public IEnumerable<ToolRequirement> RequiredTools(E2eOptions options)
    {
        yield return H2loadClient.Requirement;
        yield return NginxPeer.Requirement; // the backend, whatever the peers
        if (options.Peers.Contains("haproxy"))
        {
            yield return new ToolRequirement("haproxy", "haproxy");
        }

        if (options.Peers.Contains("direct"))
        {
            yield return NghttpdPeer.Requirement;
        }
    }

    /// <summary>The h2load request for <paramref name="variant"/> (c16m10 or c1m1) against <paramref name="peer"/>.</summary>
    public static H2loadRequest CreateRequest(string variant, IPeer peer, TimeSpan duration) => variant switch
    {
        "c16m10" => new H2loadRequest(peer.ListenEndPoint, duration, Clients: 16, Streams: 10),
        "c1m1" => new H2loadRequest(peer.ListenEndPoint, duration, Clients: 1, Streams: 1),
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, "c16m10 or c1m1"),
    };

    public async Task<ScenarioResult> RunAsync(E2eContext context, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var report = new H2Report(options);
        await report.CollectEnvironmentAsync(context, cancellationToken);
        if (options.CountSyscalls)
        {
            report.AddNote("--syscalls is not implemented for the h2 scenario; no system calls were counted.");
        }

        var nginx = ToolInstaller.Require("nginx");
        var nginxVersion = await NginxPeer.ReadVersionAsync(nginx, cancellationToken);
        var peers = await CreatePeersAsync(context, report, nginx, nginxVersion, cancellationToken);
        var backend = await NginxBackend.StartAsync(nginx, context.CreateWorkDirectory("backend"), cancellationToken, http2: options.Http2Upstream);
        report.SetBackend($"{nginxVersion}, {(options.Http2Upstream ? "h2c (listen http2; every proxy forwards over HTTP/2)" : "HTTP/1.1")}, 1 worker, master_process off, {NginxBackend.Body.Length}-byte body, on {backend.EndPoint}");
        try
        {
            var config = new PeerConfig(ProxyProtocol.Http2, backend.EndPoint, options.Http2Upstream);
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

            var h2load = new H2loadClient(ToolInstaller.Require("h2load"));
            await WarmUpAsync(h2load, running, options, report, cancellationToken);
            await HttpPeerSetup.MeasureScrapeCostsAsync(running, report, cancellationToken);

            var total = options.Repeat * options.Variants.Count * running.Count;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"h2: {running.Count} peers x {options.Variants.Count} variants x {options.Repeat} rounds, {options.Duration.TotalSeconds:0} s each (~{total * (options.Duration.TotalSeconds + 0.5) / 60:F1} min)"));
            for (var round = 0; round < options.Repeat; round++)
            {
                foreach (var variant in options.Variants)
                {
                    foreach (var peer in Rotate(running.ToList(), round))
                    {
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

                        await RunOneAsync(h2load, peer, variant, round, options, report, cancellationToken);
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
        }

        return new ScenarioResult(report.Render(), report.RenderCsv());
    }

    private static async Task<List<IPeer>> CreatePeersAsync(
        E2eContext context, H2Report report, string nginx, string nginxVersion, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var peers = new List<IPeer>();
        if (options.Peers.Contains("direct"))
        {
            var nghttpd = ToolInstaller.Require("nghttpd");
            var version = await NghttpdPeer.ReadVersionAsync(nghttpd, cancellationToken);
            peers.Add(new NghttpdPeer(nghttpd, version, context.CreateWorkDirectory("nghttpd")));
        }

        await HttpPeerSetup.AddProxiesAsync(peers, context, report, nginx, nginxVersion, cancellationToken);
        if (options.Http2Upstream && peers.RemoveAll(p => p is NginxPeer) > 0)
        {
            report.AddNote("nginx is left out with --upstream h2: its proxy module speaks HTTP/1.x to upstreams only (grpc_pass is gRPC-specific).");
        }

        return peers;
    }

    private static async Task WarmUpAsync(H2loadClient h2load, List<IPeer> peers, E2eOptions options, H2Report report, CancellationToken cancellationToken)
    {
        if (options.Warmup <= TimeSpan.Zero)
        {
            return;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up: {options.Warmup.TotalSeconds:0} s of h2load -c16 -m10 through each proxy"));
        foreach (var peer in peers)
        {
            if (peer is NghttpdPeer)
            {
                continue;
            }

            try
            {
                var result = await h2load.RunAsync(CreateRequest("c16m10", peer, options.Warmup), cancellationToken);
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



    private static async Task RunOneAsync(
        H2loadClient h2load, IPeer peer, string variant, int round, E2eOptions options, H2Report report, CancellationToken cancellationToken)
    {
        var request = CreateRequest(variant, peer, options.Duration);

        // direct's process is nghttpd, the server itself: no proxy CPU or RSS to report.
        var pid = peer is NghttpdPeer ? null : peer.Process?.Id;
        var sidecar = peer as SidecarPeer;
        try
        {
            double? allocatedBefore = null;
            if (sidecar is not null && report.HasScrapeCost(peer.Name))
            {
                allocatedBefore = await HttpPeerSetup.ReadAllocatedBytesAsync(sidecar, cancellationToken);
            }

            var cpuBefore = default(CpuTimes);
            if (pid is { } p)
            {
                ProcFs.ResetPeakRss(p);
                cpuBefore = ProcFs.ReadCpuTimes(p);
            }

            var result = await h2load.RunAsync(request, cancellationToken);
            CpuTimes? cpu = null;
            long? peakRss = null;
            if (pid is { } q)
            {
                cpu = ProcFs.ReadCpuTimes(q) - cpuBefore;
                peakRss = ProcFs.ReadPeakRssBytes(q);
            }

            double? allocated = null;
            if (sidecar is not null && allocatedBefore is { } before && await HttpPeerSetup.ReadAllocatedBytesAsync(sidecar, cancellationToken) is { } after)
            {
                allocated = Math.Max(0, after - before - report.ScrapeCost(peer.Name));
            }

            var sample = new H2Sample(peer.Name, variant, round, result, cpu, peakRss, allocated);
            report.AddSample(sample);
            Console.WriteLine(Describe(sample, options.Repeat));
        }
        catch (Exception ex) when (ex is E2eException or IOException)
        {
            report.AddFailure(peer.Name, $"{variant} round {round + 1}: {ex.Message}");
            Console.WriteLine($"  [{round + 1}/{options.Repeat}] {variant,-6} {peer.Name,-12} failed: {ex.Message}");
        }
    }

    private static string Describe(H2Sample sample, int repeat)
    {
        var inv = CultureInfo.InvariantCulture;
        var line = new System.Text.StringBuilder();
        var h = sample.H2load;
        line.Append(inv, $"  [{sample.Round + 1}/{repeat}] {sample.Variant,-6} {sample.Peer,-12} {h.RequestsPerSecond,9:F0} req/s  mean {h.MeanMicroseconds,7:F0} us  sd {h.SdMicroseconds,7:F0} us  max {h.MaxMicroseconds,7:F0} us");
        if (sample.CpuMicrosecondsPerRequest is { } cpu)
        {
            line.Append(inv, $"  CPU {cpu,6:F1} us/req (user {sample.UserMicrosecondsPerRequest,5:F1})");
        }

        if (sample.PeakRssBytes is { } rss)
        {
            line.Append(inv, $"  {rss / 1048576.0,6:F1} MiB peak");
        }

        if (sample.AllocatedBytesPerRequest is { } alloc)
        {
            line.Append(inv, $"  {alloc,7:F1} B/req allocated");
        }

        if (h.InvalidReason is { } why)
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

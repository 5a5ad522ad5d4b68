using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// L4 (opaque TCP): iperf3 through each peer.
/// <code>
///  iperf3 -c ──► peer listener (127.0.0.1:free) ──► iperf3 -s (127.0.0.1:free)
///                 direct | haproxy | sidecar-jit | sidecar-aot | sidecar-splice-off
/// </code>
/// 1. Start-up: each process peer is started fresh <c>--startup-repeat</c> times against a server-speaks-first
///    target; time to ready (HTTP 200), time to the first proxied byte, idle RSS.
/// 2. Throughput: all peers start once; then for each round, each variant (forward, -R, -P N) and each peer
///    (order rotated every round) one iperf3 run, with the proxy's CPU seconds (from /proc/PID/stat) and
///    peak RSS (VmHWM, reset before the run) around it.
/// 3. Report: medians (min–max); ratios against HAProxy paired within the same round.
/// </summary>
internal sealed class L4Scenario : IScenario
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(20);

    public string Name => "l4";

    public IEnumerable<ToolRequirement> RequiredTools(E2eOptions options)
    {
        yield return new ToolRequirement("iperf3", "iperf3");
        if (options.CountSyscalls)
        {
            yield return SyscallCounter.Requirement;
        }

        if (options.Peers.Contains("haproxy"))
        {
            yield return new ToolRequirement("haproxy", "haproxy");
        }
    }

    public async Task<ScenarioResult> RunAsync(E2eContext context, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var report = new L4Report(options);
        await report.CollectEnvironmentAsync(context, cancellationToken);

        var peers = await CreatePeersAsync(context, report, cancellationToken);
        try
        {
            if (options.StartupRepeat > 0)
            {
                await MeasureStartupAsync(peers, options.StartupRepeat, report, cancellationToken);
            }

            await MeasureThroughputAsync(context, peers, report, cancellationToken);
        }
        finally
        {
            foreach (var peer in peers)
            {
                await peer.DisposeAsync();
            }
        }

        return new ScenarioResult(report.Render(), report.RenderCsv());
    }

    private static async Task<List<IPeer>> CreatePeersAsync(E2eContext context, L4Report report, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var peers = new List<IPeer>();
        if (options.Peers.Contains("direct"))
        {
            peers.Add(new DirectPeer());
        }

        if (options.Peers.Contains("haproxy"))
        {
            var haproxy = ToolInstaller.Require("haproxy");
            var version = await HaproxyPeer.ReadVersionAsync(haproxy, cancellationToken);
            peers.Add(new HaproxyPeer(haproxy, version, options.HaproxySplice, context.CreateWorkDirectory("haproxy")));
        }

        var extra = options.SidecarArguments;
        foreach (var (name, flavor, wanted) in new[]
        {
            ("sidecar-jit", SidecarFlavor.Jit, options.Jit),
            ("sidecar-aot", SidecarFlavor.Aot, options.Aot),
            ("sidecar-splice-off", options.Jit ? SidecarFlavor.Jit : SidecarFlavor.Aot, true),
        })
        {
            if (!wanted || !options.Peers.Contains(name))
            {
                continue;
            }

            SidecarBuild build;
            try
            {
                build = await context.GetSidecarBuildAsync(flavor, cancellationToken);
            }
            catch (E2eException ex)
            {
                report.AddFailure(name, $"not built: {ex.Message}");
                continue;
            }

            report.AddBuild(build);
            IReadOnlyList<string> arguments = name == "sidecar-splice-off" ? [.. extra, "--splice", "off"] : extra;
            peers.Add(new SidecarPeer(name, build, arguments, context.CreateWorkDirectory(name)));
        }

        foreach (var peer in peers)
        {
            report.AddPeer(peer);
        }

        return peers;
    }

    private static async Task MeasureStartupAsync(List<IPeer> peers, int repeat, L4Report report, CancellationToken cancellationToken)
    {
        var candidates = peers.Where(p => p is ProcessPeer).ToList();
        if (candidates.Count == 0)
        {
            return;
        }

        Console.WriteLine($"start-up: {candidates.Count} peers x {repeat} fresh starts");
        await using var target = new BannerServer();
        var config = new PeerConfig(ProxyProtocol.Tcp, target.EndPoint);
        var failed = new HashSet<IPeer>();
        for (var round = 0; round < repeat; round++)
        {
            foreach (var peer in Rotate(candidates, round))
            {
                if (failed.Contains(peer))
                {
                    continue;
                }

                try
                {
                    peer.Launch(config);
                    var process = peer.Process!;
                    var ready = peer.WaitReadyAsync(ReadyTimeout, cancellationToken);
                    var firstByte = Probes.WaitForFirstByteAsync(peer.ListenEndPoint, process.StartTimestamp, process, ReadyTimeout, cancellationToken);
                    await Task.WhenAll(ready, firstByte);

                    // Let start-up work (JIT tiering, thread creation) settle before reading the idle footprint.
                    await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken);
                    var idleRss = ProcFs.ReadRssBytes(process.Id);
                    var sample = new StartupSample(peer.Name, round, ready.Result, firstByte.Result, idleRss);
                    report.AddStartup(sample);
                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"  [{round + 1}/{repeat}] {peer.Name,-20} ready {sample.ToReady.TotalMilliseconds,7:F1} ms  first byte {sample.ToFirstByte.TotalMilliseconds,7:F1} ms  idle RSS {idleRss / 1048576.0,6:F1} MiB"));
                }
                catch (E2eException ex)
                {
                    failed.Add(peer);
                    report.AddFailure(peer.Name, $"start-up: {ex.Message}");
                    Console.WriteLine($"  {peer.Name}: failed: {ex.Message}");
                }
                finally
                {
                    await peer.StopAsync();
                }
            }
        }
    }

    private static async Task MeasureThroughputAsync(E2eContext context, List<IPeer> peers, L4Report report, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var iperf3 = ToolInstaller.Require("iperf3");
        var client = new Iperf3Client(iperf3);
        var server = await Iperf3Server.StartAsync(iperf3, null, cancellationToken);
        try
        {
            var config = new PeerConfig(ProxyProtocol.Tcp, server.EndPoint);
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
                    report.AddFailure(peer.Name, $"throughput start: {ex.Message}");
                    Console.WriteLine($"  {peer.Name}: failed to start: {ex.Message}");
                }
            }

            var total = options.Repeat * options.Variants.Count * running.Count;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"throughput: {running.Count} peers x {options.Variants.Count} variants x {options.Repeat} rounds, {options.Duration.TotalSeconds:0} s each (~{total * (options.Duration.TotalSeconds + 0.7) / 60:F1} min)"));
            for (var round = 0; round < options.Repeat; round++)
            {
                foreach (var variant in options.Variants)
                {
                    foreach (var peer in Rotate(running.ToList(), round))
                    {
                        if (!server.IsRunning)
                        {
                            Console.WriteLine("  iperf3 server died; restarting it on the same port");
                            await server.DisposeAsync();
                            server = await Iperf3Server.StartAsync(iperf3, config.Upstream, cancellationToken);
                        }

                        if (peer.Process is { HasExited: true } dead)
                        {
                            report.AddFailure(peer.Name, $"during the throughput runs: {await dead.DescribeExitAsync()}");
                            running.Remove(peer);
                            continue;
                        }

                        await RunOneAsync(client, peer, variant, round, context, report, cancellationToken);
                    }
                }
            }
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static async Task RunOneAsync(
        Iperf3Client client, IPeer peer, string variant, int round, E2eContext context, L4Report report, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var request = new Iperf3Request(
            peer.ListenEndPoint,
            options.Duration,
            Reverse: variant == "reverse",
            ParallelStreams: variant == "parallel" ? options.ParallelStreams : 1);
        var pid = peer.Process?.Id;
        SyscallCounter? syscalls = null;
        try
        {
            var cpuBefore = default(CpuTimes);
            if (pid is { } p)
            {
                if (options.CountSyscalls)
                {
                    syscalls = await SyscallCounter.StartAsync(p, context.Temp.Combine("perf-stat.csv"), cancellationToken);
                }

                ProcFs.ResetPeakRss(p);
                cpuBefore = ProcFs.ReadCpuTimes(p);
            }

            var result = await client.RunAsync(request, cancellationToken);
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

            var sample = new ThroughputSample(peer.Name, variant, round, result.BitsPerSecond / 1e9, result.Bytes, cpu?.Total, peakRss, counts, cpu?.User);
            report.AddThroughput(sample);
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"  [{round + 1}/{options.Repeat}] {variant,-8} {peer.Name,-20} {sample.Gbps,7:F2} Gbit/s  {(sample.CpuSecondsPerGb is { } c ? c.ToString("F3", CultureInfo.InvariantCulture) + " CPU s/GB" : string.Empty),-16} {(peakRss is { } r ? (r / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB peak" : string.Empty)}{(sample.SyscallsPerMb is { } sc ? $"  {sc:F1} syscalls/MB, {sample.SplicePercent:F0}% splice" : string.Empty)}"));
        }
        catch (Exception ex) when (ex is E2eException or IOException)
        {
            report.AddFailure(peer.Name, $"{variant} round {round + 1}: {ex.Message}");
            Console.WriteLine($"  [{round + 1}/{options.Repeat}] {variant,-8} {peer.Name,-20} failed: {ex.Message}");
        }
        finally
        {
            if (syscalls is not null)
            {
                await syscalls.DisposeAsync();
            }
        }
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

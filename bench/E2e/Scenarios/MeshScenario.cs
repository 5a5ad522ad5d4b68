using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// Two-hop mesh: wrk through a pair of proxy processes to one nginx backend.
/// <code>
///  wrk -t1 ──► hop 1 (outbound) ──plaintext or mTLS──► hop 2 (inbound) ──► nginx backend, 1 worker, 13-byte body
///              direct (wrk straight to nginx) | haproxy-plain | haproxy-tls | sidecar-plain | sidecar-mtls
/// </code>
/// 1. The sidecar is published once (AOT unless only <c>--jit</c>); when a TLS peer is selected its CA commands make
///    the mesh certificates (<see cref="MeshCertificates"/>) that both the sidecar and HAProxy pairs use.
/// 2. The backend and every pair start once; a pair is ready when both hops' readiness endpoints and a GET through
///    both hops answer 200. A pair that does not start is reported under Failures (with its output), not measured.
/// 3. Warm-up: <c>--warmup</c> seconds of wrk -c32 through each pair, not recorded.
/// 4. For each round, each variant (c32, c1) and each peer (order rotated every round) one wrk run, with both hops'
///    CPU time (/proc/PID/stat) and peak RSS (VmHWM reset before the run) around it. A run with any socket error or
///    non-2xx/3xx response is kept as invalid: listed, never averaged.
/// 5. Report (<see cref="MeshReport"/>): medians (min–max), ratios against haproxy-tls and haproxy-plain paired within
///    the round, added p50 against direct, CPU of both hops summed, peak RSS per hop.
/// </summary>
internal sealed class MeshScenario : IScenario
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);

    public string Name => "mesh";

    public IEnumerable<ToolRequirement> RequiredTools(E2eOptions options)
    {
        yield return WrkClient.Requirement;
        yield return NginxPeer.Requirement; // the backend, whatever the peers
        if (options.Peers.Contains(MeshReport.HaproxyPlain) || options.Peers.Contains(MeshReport.HaproxyTls))
        {
            yield return new ToolRequirement("haproxy", "haproxy");
        }
    }

    /// <summary>The sidecar build the mesh peers run: AOT (the shipped form) unless only <c>--jit</c> was asked for.</summary>
    public static SidecarFlavor Flavor(E2eOptions options) => options.Aot ? SidecarFlavor.Aot : SidecarFlavor.Jit;

    /// <summary>The wrk request for <paramref name="variant"/> (c32 or c1) against <paramref name="peer"/>.</summary>
    public static WrkRequest CreateRequest(string variant, IPeer peer, TimeSpan duration) => variant switch
    {
        "c32" => new WrkRequest(peer.ListenEndPoint, duration, 32, ConnectionClose: false),
        "c1" => new WrkRequest(peer.ListenEndPoint, duration, 1, ConnectionClose: false),
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, "c32 or c1"),
    };

    public async Task<ScenarioResult> RunAsync(E2eContext context, CancellationToken cancellationToken)
    {
        var options = context.Options;
        var report = new MeshReport(options);
        await report.CollectEnvironmentAsync(context, cancellationToken);

        var nginx = ToolInstaller.Require("nginx");
        var nginxVersion = await NginxPeer.ReadVersionAsync(nginx, cancellationToken);
        var peers = await CreatePeersAsync(context, report, cancellationToken);
        var backend = await NginxBackend.StartAsync(nginx, context.CreateWorkDirectory("backend"), cancellationToken);
        report.SetBackend($"{nginxVersion}, 1 worker, master_process off, {NginxBackend.Body.Length}-byte body, on {backend.EndPoint}");
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
                    Console.WriteLine($"  {peer.Name}: ready");
                }
                catch (E2eException ex)
                {
                    report.AddFailure(peer.Name, $"start: {ex.Message}");
                    Console.WriteLine($"  {peer.Name}: failed to start: {ex.Message}");
                }
            }

            var wrk = new WrkClient(ToolInstaller.Require("wrk"));
            await WarmUpAsync(wrk, running, options, report, cancellationToken);

            var total = options.Repeat * options.Variants.Count * running.Count;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"mesh: {running.Count} peers x {options.Variants.Count} variants x {options.Repeat} rounds, {options.Duration.TotalSeconds:0} s each (~{total * (options.Duration.TotalSeconds + 0.5) / 60:F1} min)"));
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

                        if (peer is MeshPairPeer pair && pair.Hops.FirstOrDefault(h => h.Process.HasExited) is { } dead)
                        {
                            report.AddFailure(peer.Name, $"during the runs: {dead.Name}: {await dead.Process.DescribeExitAsync()}");
                            running.Remove(peer);
                            continue;
                        }

                        await RunOneAsync(wrk, peer, variant, round, options, report, cancellationToken);
                    }
                }
            }

            await NoteMeshTrafficAsync(running, report, cancellationToken);
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

    /// <summary>The selected peers in table order; failures to build or to make certificates are recorded, not thrown.</summary>
    private static async Task<List<IPeer>> CreatePeersAsync(E2eContext context, MeshReport report, CancellationToken cancellationToken)
    {
        var options = context.Options;
        bool Wanted(string name) => options.Peers.Contains(name);
        var peers = new List<IPeer>();
        if (Wanted("direct"))
        {
            peers.Add(new DirectPeer());
        }

        // The sidecar build runs the sidecar pairs and makes the certificates for every TLS pair.
        SidecarBuild? build = null;
        string? buildFailure = null;
        if (Wanted("sidecar-plain") || Wanted("sidecar-mtls") || Wanted(MeshReport.HaproxyTls))
        {
            try
            {
                build = await context.GetSidecarBuildAsync(Flavor(options), cancellationToken);
                report.AddBuild(build);
            }
            catch (E2eException ex)
            {
                buildFailure = $"sidecar not built: {ex.Message}";
            }
        }

        MeshCertificates? certificates = null;
        string? certificateFailure = buildFailure;
        if (build is not null && (Wanted("sidecar-mtls") || Wanted(MeshReport.HaproxyTls)))
        {
            try
            {
                certificates = await MeshCertificates.CreateAsync(build, context.CreateWorkDirectory("certificates"), cancellationToken);
            }
            catch (E2eException ex)
            {
                certificateFailure = $"no mesh certificates: {ex.Message}";
            }
        }

        if (Wanted(MeshReport.HaproxyPlain) || Wanted(MeshReport.HaproxyTls))
        {
            var haproxy = ToolInstaller.Require("haproxy");
            var version = await HaproxyPeer.ReadVersionAsync(haproxy, cancellationToken);
            if (Wanted(MeshReport.HaproxyPlain))
            {
                peers.Add(new HaproxyMeshPeer(MeshReport.HaproxyPlain, haproxy, version, null, context.CreateWorkDirectory(MeshReport.HaproxyPlain)));
            }

            if (Wanted(MeshReport.HaproxyTls))
            {
                if (certificates is null)
                {
                    report.AddFailure(MeshReport.HaproxyTls, certificateFailure ?? "no mesh certificates");
                }
                else
                {
                    peers.Add(new HaproxyMeshPeer(MeshReport.HaproxyTls, haproxy, version, certificates, context.CreateWorkDirectory(MeshReport.HaproxyTls), options.HaproxyAlpn));
                }
            }
        }

        foreach (var (name, tls) in new[] { ("sidecar-plain", false), ("sidecar-mtls", true) })
        {
            if (!Wanted(name))
            {
                continue;
            }

            if (build is null)
            {
                report.AddFailure(name, buildFailure ?? "sidecar not built");
            }
            else if (tls && certificates is null)
            {
                report.AddFailure(name, certificateFailure ?? "no mesh certificates");
            }
            else
            {
                peers.Add(new SidecarMeshPeer(name, build, options.SidecarArguments, tls ? certificates : null, context.CreateWorkDirectory(name)));
            }
        }

        foreach (var peer in peers)
        {
            report.AddPeer(peer);
        }

        return peers;
    }

    /// <summary>For sidecar-mtls: what its hops' /metrics say went over mesh mTLS during the whole run, as a report note.</summary>
    private static async Task NoteMeshTrafficAsync(List<IPeer> running, MeshReport report, CancellationToken cancellationToken)
    {
        foreach (var peer in running)
        {
            if (peer is not SidecarMeshPeer { Mtls: true } sidecar || sidecar.Hops is not [var hop1, var hop2])
            {
                continue;
            }

            try
            {
                var hop2Metrics = await PrometheusText.FetchAsync(hop2.Ready, "/metrics", cancellationToken);
                var hop1Metrics = await PrometheusText.FetchAsync(hop1.Ready, "/metrics", cancellationToken);
                var note = MeshMetrics.Describe(peer.Name, hop2Metrics, hop1Metrics, MeshCertificates.IdentityOf("hop1"));
                report.AddNote(note);
                Console.WriteLine($"  {note}");
            }
            catch (E2eException ex)
            {
                report.AddNote($"{peer.Name}: reading its hops' admin /metrics failed ({ex.Message}); mTLS traffic not confirmed.");
            }
        }
    }

    private static async Task WarmUpAsync(WrkClient wrk, List<IPeer> peers, E2eOptions options, MeshReport report, CancellationToken cancellationToken)
    {
        if (options.Warmup <= TimeSpan.Zero)
        {
            return;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up: {options.Warmup.TotalSeconds:0} s of wrk -c32 through each pair"));
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
                    $"  {peer.Name,-13} {result.RequestsPerSecond,10:F0} req/s{(result.InvalidReason is { } why ? "  (" + why + ")" : string.Empty)}"));
            }
            catch (E2eException ex)
            {
                report.AddFailure(peer.Name, $"warm-up: {ex.Message}");
                Console.WriteLine($"  {peer.Name}: warm-up failed: {ex.Message}");
            }
        }
    }

    private static async Task RunOneAsync(WrkClient wrk, IPeer peer, string variant, int round, E2eOptions options, MeshReport report, CancellationToken cancellationToken)
    {
        var request = CreateRequest(variant, peer, options.Duration);
        var hops = peer is MeshPairPeer pair ? pair.Hops : [];
        try
        {
            var before = new CpuTimes[hops.Count];
            for (var i = 0; i < hops.Count; i++)
            {
                ProcFs.ResetPeakRss(hops[i].Process.Id);
                before[i] = ProcFs.ReadCpuTimes(hops[i].Process.Id);
            }

            var result = await wrk.RunAsync(request, cancellationToken);
            var cpu = new CpuTimes?[2];
            var rss = new long?[2];
            for (var i = 0; i < hops.Count; i++)
            {
                cpu[i] = ProcFs.ReadCpuTimes(hops[i].Process.Id) - before[i];
                rss[i] = ProcFs.ReadPeakRssBytes(hops[i].Process.Id);
            }

            var sample = new MeshSample(peer.Name, variant, round, result, cpu[0], cpu[1], rss[0], rss[1]);
            report.AddSample(sample);
            Console.WriteLine(Describe(sample, options.Repeat));
        }
        catch (Exception ex) when (ex is E2eException or IOException)
        {
            report.AddFailure(peer.Name, $"{variant} round {round + 1}: {ex.Message}");
            Console.WriteLine($"  [{round + 1}/{options.Repeat}] {variant,-4} {peer.Name,-13} failed: {ex.Message}");
        }
    }

    private static string Describe(MeshSample sample, int repeat)
    {
        var inv = CultureInfo.InvariantCulture;
        var line = new System.Text.StringBuilder();
        line.Append(inv, $"  [{sample.Round + 1}/{repeat}] {sample.Variant,-4} {sample.Peer,-13} {sample.Wrk.RequestsPerSecond,9:F0} req/s");
        if (sample.Wrk.P50Microseconds is { } p50)
        {
            line.Append(inv, $"  p50 {p50,7:F0} us  p99 {sample.Wrk.P99Microseconds ?? double.NaN,7:F0} us");
        }

        if (sample.CpuMicrosecondsPerRequest is { } cpu)
        {
            line.Append(inv, $"  CPU {cpu,6:F1} us/req (hop 1 {sample.Hop1CpuMicrosecondsPerRequest,5:F1}, hop 2 {sample.Hop2CpuMicrosecondsPerRequest,5:F1})");
        }

        if (sample.Hop1PeakRssBytes is { } rss1 && sample.Hop2PeakRssBytes is { } rss2)
        {
            line.Append(inv, $"  {rss1 / 1048576.0,5:F1} + {rss2 / 1048576.0,5:F1} MiB peak");
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

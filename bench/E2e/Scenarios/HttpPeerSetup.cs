using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>What the HTTP scenarios' reports take while peers are set up and measured.</summary>
internal interface IHttpPeerReport
{
    void AddFailure(string peer, string message);

    void AddNote(string note);

    void AddPeer(IPeer peer);

    void AddBuild(SidecarBuild build);

    void SetScrapeCost(string peer, double bytes);
}

/// <summary>
/// Peer set-up shared by the HTTP/1.1 and HTTP/2 scenarios: the proxies (HAProxy, nginx, YARP, the sidecar builds)
/// in front of the same backend, and the sidecars' allocation counter. Each scenario adds its own direct peer first.
/// </summary>
internal static class HttpPeerSetup
{
    /// <summary>The proxy peers the options ask for, in report order; failures to build are recorded, not thrown.</summary>
    public static async Task AddProxiesAsync(List<IPeer> peers, E2eContext context, IHttpPeerReport report, string nginx, string nginxVersion, CancellationToken cancellationToken)
    {
        var options = context.Options;
        if (options.Peers.Contains("haproxy"))
        {
            var haproxy = ToolInstaller.Require("haproxy");
            var version = await HaproxyPeer.ReadVersionAsync(haproxy, cancellationToken);
            peers.Add(new HaproxyPeer(haproxy, version, "off", context.CreateWorkDirectory("haproxy")));
        }

        if (options.Peers.Contains("nginx"))
        {
            peers.Add(new NginxPeer(nginx, nginxVersion, context.CreateWorkDirectory("nginx")));
        }

        if (options.Peers.Contains("yarp"))
        {
            var dotnet = ToolInstaller.Find("dotnet");
            if (dotnet is null)
            {
                report.AddFailure("yarp", "'dotnet' is not on PATH");
            }
            else
            {
                peers.Add(new YarpPeer(dotnet, YarpPeer.BenchAssemblyPath, YarpPeer.PackageVersion(), context.CreateWorkDirectory("yarp")));
            }
        }

        foreach (var (name, flavor, wanted) in new[] { ("sidecar-jit", SidecarFlavor.Jit, options.Jit), ("sidecar-aot", SidecarFlavor.Aot, options.Aot) })
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
            peers.Add(new SidecarPeer(name, build, options.SidecarArguments, context.CreateWorkDirectory(name), options.SidecarProtocol));
        }

        foreach (var peer in peers)
        {
            report.AddPeer(peer);
        }
    }

    /// <summary>
    /// Reading /metrics allocates in the sidecar too (the rendered text). Two back-to-back scrapes with no traffic
    /// measure that cost, which is subtracted from every run's delta (one scrape's allocations fall inside it).
    /// </summary>
    public static async Task MeasureScrapeCostsAsync(List<IPeer> peers, IHttpPeerReport report, CancellationToken cancellationToken)
    {
        foreach (var peer in peers)
        {
            if (peer is not SidecarPeer sidecar)
            {
                continue;
            }

            var deltas = new List<double>();
            try
            {
                for (var i = 0; i < 4; i++)
                {
                    var first = await ReadAllocatedBytesAsync(sidecar, cancellationToken);
                    var second = await ReadAllocatedBytesAsync(sidecar, cancellationToken);
                    if (first is null || second is null)
                    {
                        report.AddNote(
                            $"{peer.Name}: its admin /metrics has no {PrometheusText.AllocatedBytes} sample, so bytes allocated per request " +
                            "are not reported (the exporter must export observable counters, observed at scrape time).");
                        break;
                    }

                    deltas.Add(second.Value - first.Value);
                }
            }
            catch (E2eException ex)
            {
                report.AddNote($"{peer.Name}: reading its admin /metrics failed ({ex.Message}); bytes allocated per request are not reported.");
                continue;
            }

            if (Summary.Of(deltas) is { } cost)
            {
                report.SetScrapeCost(peer.Name, cost.Median);
            }
        }
    }

    public static async Task<double?> ReadAllocatedBytesAsync(SidecarPeer sidecar, CancellationToken cancellationToken)
    {
        var text = await PrometheusText.FetchAsync(sidecar.AdminEndPoint, "/metrics", cancellationToken);
        return PrometheusText.TryGetValue(text, PrometheusText.AllocatedBytes);
    }
}

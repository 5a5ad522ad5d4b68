using System.Globalization;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// What the HTTP/1.1 and HTTP/2 reports share: the peers, builds, failures, notes and scrape costs gathered while
/// the scenario runs, the environment, and the report's header (title, run line, environment, peer and build tables).
/// </summary>
internal abstract class HttpPeerReport(E2eOptions options) : IHttpPeerReport
{
    protected readonly E2eOptions _options = options;
    protected readonly List<(string Peer, string Message)> _failures = [];
    protected readonly List<string> _notes = [];
    protected readonly List<IPeer> _peers = [];
    protected readonly List<SidecarBuild> _builds = [];
    protected readonly List<(string Name, string Value)> _environment = [];
    protected readonly Dictionary<string, double> _scrapeCosts = new(StringComparer.Ordinal);
    protected readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private string? _backend;

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

    /// <summary>The load tool's name and its version line (null when it is not installed).</summary>
    protected abstract Task<(string Tool, string? Version)> ReadToolVersionAsync(CancellationToken cancellationToken);

    /// <summary>Kernel, CPU, .NET, load tool version, git commit and load, for the report header.</summary>
    public async Task CollectEnvironmentAsync(E2eContext context, CancellationToken cancellationToken)
    {
        _environment.Add(("kernel", (await L4Report.TryReadAsync("/proc/sys/kernel/osrelease", cancellationToken)).Trim()));
        _environment.Add(("cpu", $"{Environment.ProcessorCount} x {L4Report.CpuModel(await L4Report.TryReadAsync("/proc/cpuinfo", cancellationToken))}"));
        _environment.Add((".NET runtime", Environment.Version.ToString()));
        var (tool, version) = await ReadToolVersionAsync(cancellationToken);
        if (version is not null)
        {
            _environment.Add((tool, version));
        }

        if (ToolInstaller.Find("git") is { } git)
        {
            var head = await ProcessRunner.RunAsync(git, ["-C", context.RepositoryRoot, "describe", "--always", "--dirty"], TimeSpan.FromSeconds(10), cancellationToken);
            _environment.Add(("commit", head.StandardOutput.Trim()));
        }

        _environment.Add(("load average at start", (await L4Report.TryReadAsync("/proc/loadavg", cancellationToken)).Trim()));
    }

    /// <summary>Title, run line, environment, backend, the peers' configurations and the sidecar builds.</summary>
    protected void RenderHeader(StringBuilder md, string title, string runLine)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine(title);
        md.AppendLine();
        md.AppendLine(runLine);
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
    }
}

using System.Collections.Concurrent;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.E2e;

/// <summary>What every scenario gets: options, repository root, a temp dir, and sidecar builds published once per run.</summary>
internal sealed class E2eContext
{
    private readonly ConcurrentDictionary<SidecarFlavor, Lazy<Task<SidecarBuild>>> _builds = new();

    public E2eContext(E2eOptions options, string repositoryRoot, TempDirectory temp)
    {
        Options = options;
        RepositoryRoot = repositoryRoot;
        Temp = temp;
    }

    public E2eOptions Options { get; }

    public string RepositoryRoot { get; }

    public TempDirectory Temp { get; }

    /// <summary>Publishes the sidecar in <paramref name="flavor"/> on first use; later calls get the same build (or failure).</summary>
    public Task<SidecarBuild> GetSidecarBuildAsync(SidecarFlavor flavor, CancellationToken cancellationToken) =>
        _builds.GetOrAdd(
            flavor,
            f => new Lazy<Task<SidecarBuild>>(() => SidecarPublisher.PublishAsync(
                RepositoryRoot, f, Temp.Combine($"sidecar-{f.ToString().ToLowerInvariant()}"), cancellationToken))).Value;

    /// <summary>A fresh directory under the temp dir for one peer's configuration files.</summary>
    public string CreateWorkDirectory(string name) => Directory.CreateDirectory(Temp.Combine(name)).FullName;

    /// <summary>The directory containing Proxy.sln, searched upwards from the current directory, then from the binary.</summary>
    public static string FindRepositoryRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "Proxy.sln")))
                {
                    return directory.FullName;
                }
            }
        }

        throw new E2eException("cannot find the repository root (a directory with Proxy.sln); run from inside the repository");
    }
}

/// <summary>One end-to-end comparison: L4 (iperf3), HTTP/1.1 (wrk), h2c (h2load).</summary>
internal interface IScenario
{
    /// <summary>Id used by <c>--scenario</c> and in result file names.</summary>
    string Name { get; }

    /// <summary>Tools this scenario needs with the current options, installed before it runs.</summary>
    IEnumerable<ToolRequirement> RequiredTools(E2eOptions options);

    /// <summary>Runs the scenario and returns its report.</summary>
    Task<ScenarioResult> RunAsync(E2eContext context, CancellationToken cancellationToken);
}

/// <summary>A scenario's report: markdown tables for people, and every sample as CSV.</summary>
internal sealed record ScenarioResult(string Markdown, string Csv);

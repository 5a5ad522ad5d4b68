using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// What the end-to-end reliability tests share: the resources a test made (disposed after it, newest first), scripted
/// upstreams, and an in-process sidecar with one service behind the explicit listener <c>edge</c> (<see cref="LimitsSidecar"/>).
/// </summary>
public abstract class ReliabilityTestBase : IAsyncLifetime
{
    protected static readonly TimeSpan Timeout = LimitsSidecar.TestTimeout;

    private protected List<IAsyncDisposable> Disposables { get; } = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = Disposables.Count - 1; i >= 0; i--)
        {
            await Disposables[i].DisposeAsync();
        }
    }

    private protected ScriptedUpstream Upstream(string name, string defaultAction = "200", params string[] script)
    {
        var upstream = new ScriptedUpstream(name, defaultAction, script);
        Disposables.Add(upstream);
        return upstream;
    }

    private protected Task<SidecarHost> EdgeAsync(ServiceConfig service, RouteConfig[]? routes = null, HttpConfig? http = null, ListenerProtocol protocol = ListenerProtocol.Http)
        => LimitsSidecar.StartAsync(Disposables, service, routes, http, protocol);
}

using System.Net;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.App;

/// <summary>What a reload applies live and what it reports as needing a restart (<see cref="ConfigDiff"/>).</summary>
public sealed class ConfigDiffTests
{
    private static readonly IPEndPoint A = IPEndPoint.Parse("10.0.0.1:80");
    private static readonly IPEndPoint B = IPEndPoint.Parse("10.0.0.2:80");

    private static ProxyConfig Running() => new()
    {
        Services = [new ServiceConfig("web", [], [A]), new ServiceConfig("db", [], [B])],
        Listeners = [new ListenerConfig("edge", IPEndPoint.Parse("127.0.0.1:8080"), "web") { Protocol = ListenerProtocol.Http }],
    };

    [Fact]
    public void Compute_SameConfig_Empty()
    {
        var diff = ConfigDiff.Compute(Running(), Running());
        Assert.True(diff.IsEmpty);
        Assert.Empty(diff.RestartRequired);
    }

    [Fact]
    public void Compute_ServicesAddedRemovedChanged_AppliedWithTheKeysThatChanged()
    {
        var next = Running() with { Services = [new ServiceConfig("web", [], [B]) { Balancer = Core.Balancing.BalancerKind.LeastRequest }, new ServiceConfig("cache", [], [A])] };
        var diff = ConfigDiff.Compute(Running(), next);
        Assert.Equal(["service web changed (endpoints, balancer)", "service cache added", "service db removed"], diff.Applied);
        Assert.Empty(diff.RestartRequired);
        Assert.Same(next.Services, diff.Effective.Services);
    }

    [Fact]
    public void Compute_ListenerRoutesApplied_BindingNeedsRestart_EffectiveKeepsTheBinding()
    {
        var running = Running();
        var edge = running.Listeners[0];
        var routes = new[] { new RouteConfig { Name = "all", Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("db")] } } };
        var next = running with { Listeners = [edge with { Address = IPEndPoint.Parse("127.0.0.1:9090"), Routes = routes }] };
        var diff = ConfigDiff.Compute(running, next);
        Assert.Equal(["listener edge routes changed"], diff.Applied);
        Assert.Equal(["listener edge: address changed: needs a restart"], diff.RestartRequired);
        var effective = Assert.Single(diff.Effective.Listeners);
        Assert.Equal(edge.Address, effective.Address);
        Assert.Same(routes, effective.Routes);
    }

    [Fact]
    public void Compute_ListenerAddedOrRemoved_NeedsRestart_RemovedOneKeepsServing()
    {
        var running = Running();
        var next = running with { Listeners = [new ListenerConfig("other", IPEndPoint.Parse("127.0.0.1:8081"), "db")] };
        var diff = ConfigDiff.Compute(running, next);
        Assert.Contains("listener edge removed: it keeps serving with its last routes until a restart", diff.RestartRequired);
        Assert.Contains("listener other added (127.0.0.1:8081): needs a restart", diff.RestartRequired);
        Assert.Equal("edge", Assert.Single(diff.Effective.Listeners).Name);
        Assert.True(diff.IsEmpty);
    }

    [Fact]
    public void Compute_ProcessSettings_NeedRestart_NamedByKey_NotApplied()
    {
        var running = Running();
        var next = running with { Tcp = running.Tcp with { ConnectTimeout = TimeSpan.FromSeconds(1) }, DrainTimeout = TimeSpan.FromSeconds(3), Authorization = new AuthorizationConfig() };
        var diff = ConfigDiff.Compute(running, next);
        Assert.Contains("tcp.connectTimeout changed: needs a restart", diff.RestartRequired);
        Assert.Contains("drainTimeout changed: needs a restart", diff.RestartRequired);
        Assert.Equal(running.Tcp, diff.Effective.Tcp);
        Assert.Equal(running.DrainTimeout, diff.Effective.DrainTimeout);
    }
}

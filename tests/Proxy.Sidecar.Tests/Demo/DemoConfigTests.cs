using System.Net;
using System.Text.Json;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

public class DemoConfigTests
{
    private static readonly IPEndPoint V1 = new(IPAddress.Loopback, 40001);
    private static readonly IPEndPoint V2 = new(IPAddress.Loopback, 40002);

    [Fact]
    public void Build_DefaultSplit_HeaderRouteThenCanarySplit()
    {
        var config = DemoConfig.Build(new DemoOptions(), V1, V2, out _);

        Assert.Null(config.OutboundListen);
        Assert.Null(config.InboundListen);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 0), config.AdminListen);
        var listener = Assert.Single(config.Listeners);
        Assert.Equal("demo", listener.Name);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 0), listener.Address);
        Assert.Equal(ListenerProtocol.Http, listener.Protocol);
        Assert.Equal("hello", listener.Service);

        Assert.Equal(2, listener.Routes.Count);
        var header = listener.Routes[0];
        Assert.Equal("ab-header", header.Name);
        Assert.Equal(new HeaderMatchConfig("x-version", HeaderMatchKind.Exact, "v2"), Assert.Single(header.Match.Headers));
        Assert.Equal(new WeightedDestinationConfig("hello", "v2"), Assert.Single(header.Action.Destinations));
        var canary = listener.Routes[1];
        Assert.Equal("canary", canary.Name);
        Assert.Empty(canary.Match.Headers);
        Assert.Equal([new WeightedDestinationConfig("hello", "v1", 90), new WeightedDestinationConfig("hello", "v2", 10)], canary.Action.Destinations);

        var service = Assert.Single(config.Services);
        Assert.Equal("hello", service.Name);
        Assert.Equal([V1, V2], service.Endpoints);
        // The versions speak HTTP/1.1 only: HTTP/2 clients of the demo are translated, not refused.
        Assert.Equal(UpstreamProtocol.Http1, service.UpstreamProtocol);
        Assert.Equal("v1", service.Subsets[0].Name);
        Assert.Equal([V1], service.Subsets[0].Endpoints);
        Assert.Equal("v2", service.Subsets[1].Name);
        Assert.Equal([V2], service.Subsets[1].Endpoints);
    }

    [Fact]
    public void Build_CustomSplit_WeightsFollowFlag()
    {
        var config = DemoConfig.Build(new DemoOptions { Split = [new SplitWeight("v2", 3)] }, V1, V2, out _);

        Assert.Equal([new WeightedDestinationConfig("hello", "v2", 3)], config.Listeners[0].Routes[1].Action.Destinations);
    }

    [Fact]
    public void Build_PrintedJson_LoadsBackAsTheSameConfiguration()
    {
        var built = DemoConfig.Build(new DemoOptions(), V1, V2, out var json);

        // What the banner prints is a config file 'sidecar --config' accepts, and it describes the same sidecar.
        var reloaded = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(reloaded.Ok, string.Join("; ", reloaded.Errors));
        Assert.Equal(json, ConfigJson.ToJson(reloaded.Config!));
        var routes = reloaded.Config!.Listeners[0].Routes;
        Assert.Equal(built.Listeners[0].Routes.Count, routes.Count);
        for (var i = 0; i < routes.Count; i++)
        {
            Assert.Equal(built.Listeners[0].Routes[i].Name, routes[i].Name);
            Assert.Equal(built.Listeners[0].Routes[i].Action.Destinations, routes[i].Action.Destinations);
            Assert.Equal(built.Listeners[0].Routes[i].Match.Headers, routes[i].Match.Headers);
        }

        using var doc = JsonDocument.Parse(json);
        Assert.Equal("http", doc.RootElement.GetProperty("listeners")[0].GetProperty("protocol").GetString());
        Assert.Equal(V2.ToString(), doc.RootElement.GetProperty("services")[0].GetProperty("subsets").GetProperty("v2")[0].GetString());
    }
}

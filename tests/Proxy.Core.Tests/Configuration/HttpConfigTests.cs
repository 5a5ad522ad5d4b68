using System.Net;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;

namespace Proxy.Core.Tests.Configuration;

public class HttpConfigTests
{
    private static ConfigResult Load(string? json, params (string Flag, string Value)[] flags)
        => ConfigLoader.Load(flags.ToDictionary(f => f.Flag, f => f.Value), json);

    private const string Canary = """
    {
      "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
      "http": { "maxHeaderCount": 50, "responseTimeout": "3s", "poolMaxConnections": 8, "accessLog": "stdout" },
      "services": [ {
        "name": "web", "addresses": ["10.96.0.10:80"],
        "endpoints": ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
        "balancer": "ring_hash", "hashOn": "header", "hashKey": "x-user",
        "subsets": { "v1": ["127.0.0.1:9001", "127.0.0.1:9002"], "v2": ["127.0.0.1:9003"] },
        "routes": [ { "name": "all-v1", "action": { "service": "web", "subset": "v1" } } ]
      } ],
      "listeners": [ {
        "name": "edge", "address": "127.0.0.1:0",
        "routes": [
          { "name": "ab", "match": { "headers": [ { "name": "x-version", "exact": "v2" } ] }, "action": { "service": "web", "subset": "v2" } },
          { "name": "canary", "action": { "split": [ { "service": "web", "subset": "v1", "weight": 90 }, { "service": "web", "subset": "v2", "weight": 10 } ] } }
        ]
      } ]
    }
    """;

    [Fact]
    public void Load_NothingGiven_HttpDefaults()
    {
        var c = Load(null).Config!;
        Assert.Equal(8 * 1024, c.Http.MaxRequestLineBytes);
        Assert.Equal(32 * 1024, c.Http.MaxHeaderBytes);
        Assert.Equal(100, c.Http.MaxHeaderCount);
        Assert.Equal(TimeSpan.FromSeconds(15), c.Http.ResponseTimeout);
        Assert.Equal(0, c.Http.PoolMaxConnections);
        Assert.Null(c.Http.AccessLog);
    }

    [Fact]
    public void Load_HttpFileThenFlags_FlagsOverrideFile()
    {
        var result = Load(Canary, ("http-max-headers", "70"), ("access-log", "off"), ("pool-idle-timeout", "10s"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var h = result.Config!.Http;
        Assert.Equal(70, h.MaxHeaderCount);
        Assert.Null(h.AccessLog);
        Assert.Equal(TimeSpan.FromSeconds(3), h.ResponseTimeout);
        Assert.Equal(8, h.PoolMaxConnections);
        Assert.Equal(TimeSpan.FromSeconds(10), h.PoolIdleTimeout);
    }

    [Fact]
    public void Load_H2PoolMaxConnections_DefaultFileAndFlag()
    {
        Assert.Equal(16, Load(null).Config!.Http.Http2PoolMaxConnections);
        var fromFile = Load("""{ "outboundListen": "off", "inboundListen": "off", "adminListen": "off", "http": { "h2PoolMaxConnections": 4 } }""");
        Assert.True(fromFile.Ok, string.Join("\n", fromFile.Errors));
        Assert.Equal(4, fromFile.Config!.Http.Http2PoolMaxConnections);
        Assert.Equal(0, Load(null, ("h2-pool-max-connections", "0")).Config!.Http.Http2PoolMaxConnections);
    }

    [Fact]
    public void Load_H2PoolMaxConnectionsInvalid_ErrorNamesTheKey()
    {
        var result = Load(null, ("h2-pool-max-connections", "-1"));

        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.Contains("h2-pool-max-connections", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_ListenerWithRoutes_HttpWithoutService()
    {
        var c = Load(Canary).Config!;
        var l = Assert.Single(c.Listeners);
        Assert.Equal(ListenerProtocol.Http, l.Protocol);
        Assert.Equal("", l.Service);
        Assert.Equal(["ab", "canary"], l.Routes.Select(r => r.Name));
        Assert.Equal([90, 10], l.Routes[1].Action.Destinations.Select(d => d.Weight));
    }

    [Fact]
    public void Load_ServiceSubsetsHashKeyRoutes_Read()
    {
        var s = Load(Canary).Config!.Services[0];
        Assert.Equal(HashOn.Header, s.HashOn);
        Assert.Equal("x-user", s.HashKey);
        Assert.Equal(["v1", "v2"], s.Subsets.Select(x => x.Name));
        Assert.Equal([IPEndPoint.Parse("127.0.0.1:9003")], s.Subsets[1].Endpoints);
        Assert.Equal("all-v1", Assert.Single(s.Routes).Name);
    }

    [Fact]
    public void Load_ListenerWithoutRoutes_TcpUnlessProtocolSaysHttp()
    {
        var json = """
        { "services": [ { "name": "a", "endpoints": ["127.0.0.1:1"] } ],
          "listeners": [ { "name": "t", "address": "127.0.0.1:0", "service": "a" },
                         { "name": "h", "address": "127.0.0.1:0", "service": "a", "protocol": "http" } ] }
        """;
        var c = Load(json).Config!;
        Assert.Equal(ListenerProtocol.Tcp, c.Listeners[0].Protocol);
        Assert.Equal(ListenerProtocol.Http, c.Listeners[1].Protocol);
    }

    [Fact]
    public void Load_BadHttpKeys_EveryErrorNamesItsKey()
    {
        var json = """
        {
          "http": { "maxHeaderCount": 0, "bogus": 1 },
          "services": [
            { "name": "a", "endpoints": ["127.0.0.1:1"], "subsets": { "v1": ["127.0.0.1:2"] } },
            { "name": "b", "endpoints": ["127.0.0.1:3"], "balancer": "ring_hash", "hashOn": "header" },
            { "name": "c", "endpoints": ["127.0.0.1:4"], "hashKey": "x" }
          ],
          "listeners": [
            { "name": "l1", "address": "127.0.0.1:0", "protocol": "tcp", "routes": [ { "action": { "service": "a" } } ] },
            { "name": "l2", "address": "127.0.0.1:0", "protocol": "gopher", "service": "a" },
            { "name": "l3", "address": "127.0.0.1:0", "routes": [ { "action": { "service": "nope" } }, { "action": { "service": "b", "subset": "v9" } } ] },
            { "name": "l4", "address": "127.0.0.1:0" }
          ]
        }
        """;
        var errors = Load(json).Errors;
        string[] expected =
        [
            "http.maxHeaderCount:",
            "http.bogus: unknown key",
            "services[0].subsets.v1[0]: 127.0.0.1:2 is not one of the service's endpoints",
            "services[1].hashKey: missing",
            "services[2].hashKey: only used with hashOn header or cookie",
            "listeners[0].routes: routes need protocol http, not tcp",
            "listeners[1].protocol: \"gopher\" is not one of http, tcp",
            "listeners[2].routes[0].action.service: no service is named \"nope\"",
            "listeners[3].service: missing",
        ];
        foreach (var e in expected)
        {
            Assert.True(errors.Any(x => x.StartsWith(e, StringComparison.Ordinal)), $"missing: {e}\nactual:\n{string.Join("\n", errors)}");
        }
    }

    [Fact]
    public void Load_ListenerWithRefusedRoutes_OnlyTheRouteErrors_NoServiceError()
    {
        var json = """
        { "services": [ { "name": "b", "endpoints": ["127.0.0.1:3"] } ],
          "listeners": [ { "name": "l", "address": "127.0.0.1:0", "routes": [ { "action": { "redirect": { "status": 200 } } } ] },
                         { "name": "m", "address": "127.0.0.1:0", "routes": [] } ] }
        """;
        var errors = Load(json).Errors;
        Assert.Contains(errors, e => e.StartsWith("listeners[0].routes[0].action.redirect.status: must be 301", StringComparison.Ordinal));
        Assert.DoesNotContain("listeners[0].service: missing", errors);
        // No routes at all (an empty list): the listener must still name its service.
        Assert.Contains("listeners[1].service: missing", errors);
    }

    [Fact]
    public void Load_RouteToUnknownSubset_Rejected()
    {
        var json = """
        { "services": [ { "name": "b", "endpoints": ["127.0.0.1:3"], "subsets": { "v1": ["127.0.0.1:3"] } } ],
          "listeners": [ { "name": "l", "address": "127.0.0.1:0", "routes": [ { "action": { "service": "b", "subset": "v9" } } ] } ] }
        """;
        var errors = Load(json).Errors;
        Assert.Contains("listeners[0].routes[0].action.subset: service \"b\" has no subset \"v9\"", errors);
    }

    [Fact]
    public void ToJson_RoutesSubsetsHttp_RoundTripThroughLoader()
    {
        var first = Load(Canary).Config!;
        var json = ConfigJson.ToJson(first);
        var second = Load(json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        Assert.Equal(first.Http, second.Config!.Http);
        Assert.Equal(2, second.Config.Listeners[0].Routes.Count);
    }

    [Fact]
    public void ServiceRegistry_Subsets_ShareEndpointsWithTheService()
    {
        var registry = new ServiceRegistry(Load(Canary).Config!.Services);
        var web = registry.FindByName("web")!;
        var v2 = web.FindSubset("v2")!;
        Assert.Equal("web", v2.Name);
        Assert.Equal("v2", v2.SubsetName);
        Assert.Null(web.FindSubset("v3"));
        Assert.Equal("x-user"u8.ToArray(), v2.HashKey);
        var picked = v2.Balancer.Pick(BalancerContext.WithKey("alice"u8));
        Assert.Equal(IPEndPoint.Parse("127.0.0.1:9003"), picked.Address.EndPoint);

        // One Endpoint object per address: load seen through the subset is the service's load.
        var token = picked.OnRequestStart();
        var all = web.Balancer;
        Assert.NotNull(all);
        var seen = false;
        for (var i = 0; i < 64 && !seen; i++)
        {
            var e = web.Balancer.Pick(BalancerContext.WithKey(BitConverter.GetBytes(i)));
            seen = ReferenceEquals(e, picked) && e.InFlight == 1;
        }

        picked.EndWithoutSample();
        Assert.True(seen);
        _ = token;
    }
}

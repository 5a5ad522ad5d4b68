using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;

namespace Proxy.Core.Tests.Configuration;

public sealed class ConfigLoaderBalancerTests
{
    private static ConfigResult Load(string json) => ConfigLoader.Load(new Dictionary<string, string>(), json);

    [Fact]
    public void Load_NoBalancerKey_RoundRobinWithWeightOne()
    {
        var result = Load("""{ "services": [ { "name": "a", "endpoints": ["127.0.0.1:1", "127.0.0.1:2"] } ] }""");

        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var s = Assert.Single(result.Config!.Services);
        Assert.Equal(BalancerKind.RoundRobin, s.Balancer);
        Assert.Equal(HashOn.None, s.HashOn);
        Assert.Empty(s.Weights);
        Assert.Equal(1, s.WeightOf(1));
    }

    [Fact]
    public void Load_BalancerAndWeightedEndpoints_Read()
    {
        var result = Load("""
        { "services": [ { "name": "a", "balancer": "peak_ewma",
            "endpoints": ["127.0.0.1:1", { "address": "[::1]:2", "weight": 3 }, { "address": "127.0.0.1:3" }] } ] }
        """);

        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var s = Assert.Single(result.Config!.Services);
        Assert.Equal(BalancerKind.PeakEwma, s.Balancer);
        Assert.Equal([1, 3, 1], s.Weights);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 2), s.Endpoints[1]);
    }

    [Fact]
    public void Load_RingHashWithoutHashOn_HashesOnSourceIp()
    {
        var result = Load("""{ "services": [ { "name": "a", "balancer": "ring_hash", "endpoints": ["127.0.0.1:1"] } ] }""");

        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(HashOn.SourceIp, result.Config!.Services[0].HashOn);
    }

    [Theory]
    [InlineData("", UpstreamProtocol.Same)]
    [InlineData(", \"upstreamProtocol\": \"same\"", UpstreamProtocol.Same)]
    [InlineData(", \"upstreamProtocol\": \"http1\"", UpstreamProtocol.Http1)]
    [InlineData(", \"upstreamProtocol\": \"http2\"", UpstreamProtocol.Http2)]
    public void Load_UpstreamProtocol_ReadAndCarriedToTheServiceAndBackToJson(string key, UpstreamProtocol expected)
    {
        var result = Load("{ \"services\": [ { \"name\": \"a\", \"endpoints\": [\"127.0.0.1:1\"]" + key + " } ] }");

        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(expected, result.Config!.Services[0].UpstreamProtocol);
        Assert.Equal(expected, new ServiceRegistry(result.Config.Services).FindByName("a")!.UpstreamProtocol);
        var again = ConfigLoader.Load(new Dictionary<string, string>(), ConfigJson.ToJson(result.Config));
        Assert.Equal(expected, again.Config!.Services[0].UpstreamProtocol);
    }

    [Fact]
    public void Load_BadUpstreamProtocol_ErrorNamesTheKey()
    {
        var result = Load("""{ "services": [ { "name": "a", "endpoints": ["127.0.0.1:1"], "upstreamProtocol": "h2" } ] }""");

        Assert.False(result.Ok);
        Assert.Contains("services[0].upstreamProtocol: \"h2\" is not an upstream protocol (same, http1, http2)", result.Errors);
    }

    [Fact]
    public void Load_BadBalancerKeys_EveryErrorNamesItsKey()
    {
        var result = Load("""
        { "services": [
            { "name": "a", "balancer": "fastest", "endpoints": ["127.0.0.1:1"] },
            { "name": "b", "balancer": "random", "hashOn": "source_ip", "endpoints": ["127.0.0.1:1"] },
            { "name": "c", "balancer": "ring_hash", "hashOn": "body", "endpoints": ["127.0.0.1:1"] },
            { "name": "d", "balancer": 3, "endpoints": [
                { "address": "127.0.0.1:1", "weight": 0 },
                { "address": "127.0.0.1:2", "weight": 1.5 },
                { "address": "127.0.0.1:3", "weight": 1001 },
                { "weight": 2 },
                { "address": "127.0.0.1", "weight": 2 },
                { "address": "127.0.0.1:6", "wieght": 2 },
                true ] }
        ] }
        """);

        Assert.False(result.Ok);
        string[] expected =
        [
            "services[0].balancer: \"fastest\" is not a balancer (round_robin, random, least_request, peak_ewma, ring_hash)",
            "services[1].hashOn: only used with balancer ring_hash, not random",
            "services[2].hashOn: \"body\" is not a hash key (source_ip, header, cookie)",
            "services[3].balancer: must be a non-empty string",
            "services[3].endpoints[0].weight: must be a whole number from 1 to 1000, not 0",
            "services[3].endpoints[1].weight: must be a whole number from 1 to 1000, not 1.5",
            "services[3].endpoints[2].weight: must be a whole number from 1 to 1000, not 1001",
            "services[3].endpoints[3].address: missing",
            "services[3].endpoints[4].address: \"127.0.0.1\" is not an address with a port",
            "services[3].endpoints[5].wieght: unknown key",
            "services[3].endpoints[6]: must be a string \"ip:port\" or an object",
        ];
        foreach (var e in expected)
        {
            Assert.Contains(result.Errors, actual => actual.StartsWith(e, StringComparison.Ordinal));
        }

        Assert.Equal(expected.Length, result.Errors.Count);
    }

    [Fact]
    public void ToJson_BalancerAndWeights_RoundTripThroughLoader()
    {
        const string json = """
        { "services": [
            { "name": "a", "balancer": "ring_hash", "endpoints": [ { "address": "127.0.0.1:1", "weight": 2 }, "127.0.0.1:2" ] },
            { "name": "b", "balancer": "least_request", "endpoints": [ "127.0.0.1:3" ] } ] }
        """;
        var first = Load(json).Config!;
        var written = ConfigJson.ToJson(first);
        var second = Load(written);

        Assert.True(second.Ok, string.Join("\n", second.Errors));
        Assert.Equal(written, ConfigJson.ToJson(second.Config!));
        Assert.Equal([2, 1], second.Config!.Services[0].Weights);
        Assert.Equal(HashOn.SourceIp, second.Config.Services[0].HashOn);
        Assert.Equal(BalancerKind.LeastRequest, second.Config.Services[1].Balancer);
        Assert.Contains("\"weight\": 2", written, StringComparison.Ordinal);
        Assert.Contains("\"hashOn\": \"source_ip\"", written, StringComparison.Ordinal);
    }

    [Fact]
    public void ServiceRegistry_ConfiguredService_BalancerKindAndWeightsApplied()
    {
        var config = Load("""
        { "services": [ { "name": "a", "balancer": "ring_hash",
            "endpoints": [ { "address": "127.0.0.1:1", "weight": 2 }, "[::ffff:127.0.0.1]:2" ] } ] }
        """).Config!;
        var service = new ServiceRegistry(config.Services).FindByName("a")!;

        var balancer = Assert.IsType<RingHashBalancer>(service.Balancer);
        Assert.Equal(2, balancer.Endpoints[0].Weight);
        Assert.Equal(new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 2)), balancer.Endpoints[1].Address);

        // Hashing on the source IP: one client IP keeps its endpoint whatever its port.
        var picked = service.Pick(new IPEndPoint(IPAddress.Parse("192.0.2.9"), 40000));
        for (var port = 40001; port < 40050; port++)
        {
            Assert.Same(picked, service.Pick(new IPEndPoint(IPAddress.Parse("::ffff:192.0.2.9"), port)));
        }
    }

    [Fact]
    public void ServiceRegistry_WeightsNotMatchingEndpoints_ThrowsNamingTheService()
    {
        var config = new ServiceConfig("w", [], [new IPEndPoint(IPAddress.Loopback, 1)]) { Weights = [1, 2] };

        var e = Assert.Throws<ArgumentException>(() => new ServiceRegistry([config]));
        Assert.Contains("service \"w\" has 2 weights for 1 endpoints", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_HashOnWithInvalidBalancer_OnlyTheBalancerError()
    {
        var result = Load("""{ "services": [ { "name": "a", "balancer": "nope", "hashOn": "source_ip", "endpoints": ["127.0.0.1:1"] } ] }""");

        Assert.StartsWith("services[0].balancer: \"nope\"", Assert.Single(result.Errors), StringComparison.Ordinal);
    }
}

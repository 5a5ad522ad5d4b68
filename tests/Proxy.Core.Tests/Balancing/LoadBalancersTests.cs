using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

public sealed class LoadBalancersTests
{
    [Theory]
    [InlineData(BalancerKind.RoundRobin, typeof(RoundRobinBalancer), "round_robin")]
    [InlineData(BalancerKind.Random, typeof(RandomBalancer), "random")]
    [InlineData(BalancerKind.LeastRequest, typeof(LeastRequestBalancer), "least_request")]
    [InlineData(BalancerKind.PeakEwma, typeof(PeakEwmaBalancer), "peak_ewma")]
    [InlineData(BalancerKind.RingHash, typeof(RingHashBalancer), "ring_hash")]
    public void Create_EachKind_BuildsItsBalancerAndNameRoundTrips(BalancerKind kind, Type type, string name)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(3, 1, 2, 3));

        Assert.IsType(type, balancer);
        Assert.Equal(3, balancer.Endpoints.Count);
        Assert.Equal(6, balancer.Endpoints.TotalWeight);
        Assert.Equal(name, LoadBalancers.Name(kind));
        Assert.True(LoadBalancers.TryParse(name, out var parsed));
        Assert.Equal(kind, parsed);
    }

    [Fact]
    public void TryParse_Unknown_False()
    {
        Assert.False(LoadBalancers.TryParse("RoundRobin", out _));
    }

    [Fact]
    public void EndpointSet_Empty_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => EndpointSet.Create([]));
    }

    [Fact]
    public void EndpointSet_SharedEndpoints_LoadCarriesOverToANewSnapshot()
    {
        var first = EndpointSet.Create(Endpoints.Addresses(2));
        first[1].OnRequestStart();
        var second = new EndpointSet([first[1], new Endpoint(Endpoints.Address(5))]);
        var balancer = new LeastRequestBalancer(second, new BalancerOptions { Random = new ScriptedRandom(0, 0) });

        Assert.Same(second[1], balancer.Pick(BalancerContext.None));
    }
}

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

    [Fact]
    public void EndpointSet_Update_KeepsUnchangedEndpointsAndTheirLoad()
    {
        var first = EndpointSet.Create(Endpoints.Addresses(3, 1, 2, 1));
        first[1].OnRequestStart();
        first[2].OnRequestStart();
        var next = Endpoints.Addresses(4, 1, 2, 5, 1);

        var second = first.Update([next[1], next[2], next[3]]);

        Assert.Same(first[1], second[0]);
        Assert.Equal(1, second[0].InFlight);
        Assert.NotSame(first[2], second[1]);
        Assert.Equal(5, second[1].Weight);
        Assert.Equal(0, second[1].InFlight);
        Assert.Equal(Endpoints.Address(3), second[2].Address);
        Assert.Equal(8, second.TotalWeight);
    }
}

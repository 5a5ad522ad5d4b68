using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

public sealed class RoundRobinBalancerTests
{
    [Fact]
    public void Pick_EqualWeights_CyclesInOrderFromTheFirst()
    {
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(3)));

        Assert.Equal([0, 1, 2, 0, 1, 2, 0], Endpoints.Picks(balancer, 7));
    }

    [Fact]
    public void Pick_Weights511_SpreadsTheHeavyEndpointLikeNginx()
    {
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(3, 5, 1, 1)));

        Assert.Equal(7, balancer.ScheduleLength);
        Assert.Equal([0, 0, 1, 0, 2, 0, 0, 0, 0, 1], Endpoints.Picks(balancer, 10));
    }

    [Fact]
    public void Pick_Weights_ExactProportionsOver10kPicks()
    {
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(4, 1, 2, 3, 4)));

        Assert.Equal([1000, 2000, 3000, 4000], Endpoints.Counts(balancer, 10_000));
    }

    [Fact]
    public void Constructor_WeightsWithCommonDivisor_ScheduleIsReduced()
    {
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(2, 300, 200)));

        Assert.Equal(5, balancer.ScheduleLength);
        Assert.Equal([0, 1, 0, 1, 0], Endpoints.Picks(balancer, 5));
    }

    [Fact]
    public void Constructor_TotalWeightAboveMax_ScaledProportionsKept()
    {
        var options = new BalancerOptions { MaxScheduleLength = 100 };
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(3, 999, 1, 500), options), options);

        Assert.InRange(balancer.ScheduleLength, 3, 100);
        var counts = Endpoints.Counts(balancer, balancer.ScheduleLength);
        Assert.Equal(66, counts[0]);
        Assert.Equal(1, counts[1]);
        Assert.Equal(33, counts[2]);
    }

    [Fact]
    public void Pick_SingleEndpoint_AlwaysIt()
    {
        var balancer = new RoundRobinBalancer(EndpointSet.Create(Endpoints.Addresses(1, 7)));

        Assert.Equal([0, 0, 0], Endpoints.Picks(balancer, 3));
    }
}

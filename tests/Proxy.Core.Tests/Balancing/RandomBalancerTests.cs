using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

public sealed class RandomBalancerTests
{
    [Fact]
    public void Pick_EqualWeights_TakesTheDrawnIndex()
    {
        var random = new ScriptedRandom(2, 0, 1, 2);
        var balancer = new RandomBalancer(EndpointSet.Create(Endpoints.Addresses(3)), new BalancerOptions { Random = random });

        Assert.Equal([2, 0, 1, 2], Endpoints.Picks(balancer, 4));
        Assert.Equal(0, random.Remaining);
    }

    [Fact]
    public void Pick_Weights_DrawIsAPointOnTheWeightLine()
    {
        // Weights 1, 3, 6: points 0 | 1-3 | 4-9.
        var random = new ScriptedRandom(0, 1, 3, 4, 9);
        var balancer = new RandomBalancer(EndpointSet.Create(Endpoints.Addresses(3, 1, 3, 6)), new BalancerOptions { Random = random });

        Assert.Equal([0, 1, 1, 2, 2], Endpoints.Picks(balancer, 5));
    }

    [Fact]
    public void Pick_Weights_ProportionsWithinTwoPercentOver10kPicks()
    {
        var balancer = new RandomBalancer(EndpointSet.Create(Endpoints.Addresses(3, 1, 2, 7)), new BalancerOptions { Random = new SeededRandom(7) });

        var counts = Endpoints.Counts(balancer, 10_000);

        Assert.InRange(counts[0], 800, 1200);
        Assert.InRange(counts[1], 1800, 2200);
        Assert.InRange(counts[2], 6800, 7200);
    }

    [Fact]
    public void Pick_SingleEndpoint_DrawsNothing()
    {
        var balancer = new RandomBalancer(EndpointSet.Create(Endpoints.Addresses(1)), new BalancerOptions { Random = new ScriptedRandom() });

        Assert.Equal([0, 0], Endpoints.Picks(balancer, 2));
    }
}

using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

public sealed class LeastRequestBalancerTests
{
    private static void Load(EndpointSet set, params int[] inFlight)
    {
        for (var i = 0; i < inFlight.Length; i++)
        {
            for (var j = 0; j < inFlight[i]; j++)
            {
                set[i].OnRequestStart();
            }
        }
    }

    [Fact]
    public void Pick_ScriptedPairs_TakesTheLessLoadedOfTheTwo()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(4));
        Load(set, 3, 0, 5, 1);

        // Each pick draws Next(4) then Next(3); a second draw at or above the first skips it.
        var random = new ScriptedRandom(0, 0, 2, 2, 3, 0, 2, 0);
        var balancer = new LeastRequestBalancer(set, new BalancerOptions { Random = random });

        // (0,1) -> 1; (2,3) -> 3; (3,0) -> 3; (2,0) -> 0.
        Assert.Equal([1, 3, 3, 0], Endpoints.Picks(balancer, 4));
        Assert.Equal(0, random.Remaining);
    }

    [Fact]
    public void Pick_Tie_FirstDrawWins()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(3));
        Load(set, 2, 2, 2);
        var balancer = new LeastRequestBalancer(set, new BalancerOptions { Random = new ScriptedRandom(2, 0, 1, 1) });

        Assert.Equal([2, 1], Endpoints.Picks(balancer, 2));
    }

    [Fact]
    public void Pick_OneEndpointLoaded_NeverPicksIt()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(3));
        Load(set, 0, 10, 0);
        var balancer = new LeastRequestBalancer(set, new BalancerOptions { Random = new SeededRandom(1) });

        var counts = Endpoints.Counts(balancer, 10_000);

        Assert.Equal(0, counts[1]);
        Assert.InRange(counts[0], 4500, 5500);
    }

    [Fact]
    public void Pick_LoadShiftsOverTime_FollowsTheIdleEndpoint()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(2));
        var balancer = new LeastRequestBalancer(set, new BalancerOptions { Random = new SeededRandom(3) });
        var tokens = new List<(Endpoint Endpoint, long Token)>();

        // Requests that never finish pile up; P2C over two endpoints alternates to keep them level.
        for (var i = 0; i < 100; i++)
        {
            var e = balancer.Pick(BalancerContext.None);
            tokens.Add((e, e.OnRequestStart()));
            Assert.InRange(set[0].InFlight - set[1].InFlight, -1, 1);
        }

        foreach (var (e, token) in tokens)
        {
            e.OnRequestEnd(token, success: true);
        }

        Assert.Equal(0, set[0].InFlight);
        Assert.Equal(0, set[1].InFlight);
    }

    [Fact]
    public void Pick_WeightedScript_SecondDrawSkipsTheFirstEndpoint()
    {
        // Weights 1, 3, 6: first draw on [0,10); the second on the 10 - w(first) others.
        var set = EndpointSet.Create(Endpoints.Addresses(3, 1, 3, 6));
        Load(set, 5, 5, 5);
        var random = new ScriptedRandom(9, 0, 9, 3, 0, 0, 0, 8);
        var balancer = new LeastRequestBalancer(set, new BalancerOptions { Random = random });

        // Ties all round, so the first draw wins: 2, 2, 0, 0.
        Assert.Equal([2, 2, 0, 0], Endpoints.Picks(balancer, 4));

        set[0].EndWithoutSample();
        set[1].EndWithoutSample();
        set[1].EndWithoutSample();

        // In-flight now 4, 3, 5. (9 -> 2, 0 -> 0) picks 0; (9 -> 2, 3 -> 1) picks 1; (0 -> 0, 0 -> 1) picks 1; (0 -> 0, 8 -> 2) picks 0.
        var second = new LeastRequestBalancer(set, new BalancerOptions { Random = new ScriptedRandom(9, 0, 9, 3, 0, 0, 0, 8) });
        Assert.Equal([0, 1, 1, 0], Endpoints.Picks(second, 4));
    }

    [Fact]
    public void Pick_IdleWeighted_ProportionsFollowWeights()
    {
        var balancer = new LeastRequestBalancer(EndpointSet.Create(Endpoints.Addresses(3, 1, 2, 7)), new BalancerOptions { Random = new SeededRandom(11) });

        var counts = Endpoints.Counts(balancer, 10_000);

        Assert.InRange(counts[0], 800, 1200);
        Assert.InRange(counts[1], 1800, 2200);
        Assert.InRange(counts[2], 6800, 7200);
    }

    [Fact]
    public void Pick_SingleEndpoint_DrawsNothing()
    {
        var balancer = new LeastRequestBalancer(EndpointSet.Create(Endpoints.Addresses(1)), new BalancerOptions { Random = new ScriptedRandom() });

        Assert.Equal([0, 0], Endpoints.Picks(balancer, 2));
    }
}

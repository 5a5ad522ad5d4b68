using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

/// <summary>Every balancer skips ejected and unhealthy endpoints, allocation-free, and falls back to all of them when none is left (panic).</summary>
public sealed class AvailabilityTests
{
    public static TheoryData<BalancerKind> Kinds => [.. Enum.GetValues<BalancerKind>()];

    private static void Eject(Endpoint e) => e.Eject(long.MaxValue, "test");

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Ejected_NeverPicked_OthersKeepTheirShares(BalancerKind kind)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(4, 1, 1, 2, 4), new BalancerOptions { Random = new SeededRandom(7) });
        Eject(balancer.Endpoints[3]);
        var counts = new int[4];
        for (var i = 0; i < 8000; i++)
        {
            var context = BalancerContext.WithHash((ulong)i * 0x9e3779b97f4a7c15UL);
            counts[Endpoints.IndexOf(balancer.Endpoints, balancer.Pick(in context))]++;
        }

        Assert.Equal(0, counts[3]);
        Assert.All(counts[..3], c => Assert.True(c > 0));
        if (kind is BalancerKind.RoundRobin or BalancerKind.Random)
        {
            // Weights 1:1:2 among the rest: the skipped turns are shared in proportion.
            Assert.InRange(counts[2] / (double)(counts[0] + counts[1]), 0.85, 1.15);
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Unhealthy_NeverPicked_BackWhenHealthy(BalancerKind kind)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(3));
        var e = balancer.Endpoints[0];
        e.RecordCheck(healthy: false, "down", healthyThreshold: 1, unhealthyThreshold: 1);
        Assert.DoesNotContain(0, Endpoints.Picks(balancer, 300));
        e.RecordCheck(healthy: true, null, healthyThreshold: 1, unhealthyThreshold: 1);
        Assert.Contains(0, Endpoints.Picks(balancer, 300));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void AllOut_PanicPicksFromAll(BalancerKind kind)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(3));
        foreach (var e in balancer.Endpoints.AsSpan())
        {
            Eject(e);
        }

        var picks = Endpoints.Picks(balancer, 300);
        Assert.Equal(3, picks.Distinct().Count());
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SkippingEjected_AllocatesNothing(BalancerKind kind)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(5, 1, 2, 3, 4, 5));
        Eject(balancer.Endpoints[1]);
        Eject(balancer.Endpoints[4]);
        Run(balancer, 1000);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(balancer, 10_000);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        // Panic too.
        foreach (var e in balancer.Endpoints.AsSpan())
        {
            Eject(e);
        }

        before = GC.GetAllocatedBytesForCurrentThread();
        Run(balancer, 10_000);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static void Run(ILoadBalancer balancer, int n)
    {
        var keyed = BalancerContext.WithHash(12345);
        for (var i = 0; i < n; i++)
        {
            var e = (i & 1) == 0 ? balancer.Pick(in keyed) : balancer.Pick(BalancerContext.None);
            e.RecordResult((i & 3) == 0 ? UpstreamResult.GatewayError : UpstreamResult.Success);
        }
    }

    [Fact]
    public void RingHash_OnlyTheEjectedEndpointsKeysMove_AndComeBack()
    {
        var balancer = LoadBalancers.Create(BalancerKind.RingHash, Endpoints.Addresses(4));
        var before = new Endpoint[2000];
        for (var i = 0; i < before.Length; i++)
        {
            var context = BalancerContext.WithHash((ulong)i * 0x9e3779b97f4a7c15UL);
            before[i] = balancer.Pick(in context);
        }

        var ejected = balancer.Endpoints[2];
        Eject(ejected);
        for (var i = 0; i < before.Length; i++)
        {
            var context = BalancerContext.WithHash((ulong)i * 0x9e3779b97f4a7c15UL);
            var now = balancer.Pick(in context);
            Assert.NotSame(ejected, now);
            if (!ReferenceEquals(before[i], ejected))
            {
                Assert.Same(before[i], now);
            }
        }

        ejected.Return(0);
        for (var i = 0; i < before.Length; i++)
        {
            var context = BalancerContext.WithHash((ulong)i * 0x9e3779b97f4a7c15UL);
            Assert.Same(before[i], balancer.Pick(in context));
        }
    }

    [Fact]
    public void RoundRobin_SkippedTurnGoesToTheNextInOrder_NotTwiceToOne()
    {
        var balancer = LoadBalancers.Create(BalancerKind.RoundRobin, Endpoints.Addresses(3));
        Eject(balancer.Endpoints[2]);
        Assert.Equal([0, 1, 0, 1, 0, 1], Endpoints.Picks(balancer, 6));
    }
}

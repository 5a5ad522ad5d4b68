using Proxy.Core.Balancing;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Balancing;

public sealed class PeakEwmaBalancerTests
{
    private readonly ManualTimeProvider _clock = new();

    private BalancerOptions Options(IRandomSource random) => new() { Time = _clock, Random = random };

    /// <summary>One request on <paramref name="endpoint"/> that takes <paramref name="latency"/> on the manual clock.</summary>
    private void Serve(Endpoint endpoint, TimeSpan latency, bool success = true)
    {
        var token = endpoint.OnRequestStart();
        _clock.Advance(latency);
        endpoint.OnRequestEnd(token, success);
    }

    [Fact]
    public void Pick_OneSlowEndpoint_TrafficMovesAway()
    {
        var options = Options(new SeededRandom(5));
        var set = EndpointSet.Create(Endpoints.Addresses(3), options);
        var balancer = new PeakEwmaBalancer(set, options);
        Serve(set[0], TimeSpan.FromMilliseconds(10));
        Serve(set[1], TimeSpan.FromMilliseconds(500));
        Serve(set[2], TimeSpan.FromMilliseconds(12));

        var counts = new int[3];
        for (var i = 0; i < 3000; i++)
        {
            var e = balancer.Pick(BalancerContext.None);
            counts[Endpoints.IndexOf(set, e)]++;
            Serve(e, TimeSpan.FromMilliseconds(e == set[1] ? 500 : 10));
        }

        // The slow endpoint is only ever chosen as the better of a pair: never, while both others are fast.
        Assert.Equal(0, counts[1]);
        Assert.InRange(counts[0], 1000, 2200);
        Assert.InRange(counts[2], 800, 2000);
    }

    [Fact]
    public void Pick_SlowEndpointIdle_DecaysAndGetsTrafficBackAfterRecovery()
    {
        var options = Options(new SeededRandom(9));
        var set = EndpointSet.Create(Endpoints.Addresses(2), options);
        var balancer = new PeakEwmaBalancer(set, options);
        Serve(set[0], TimeSpan.FromMilliseconds(10));
        Serve(set[1], TimeSpan.FromMilliseconds(500));

        // Once a second the fast endpoint serves a 10 ms request; the idle slow one's estimate decays
        // (decay 10 s): 500 ms * e^(-t/10 s) < ~10 ms after about ln(50) * 10 s = 39 s.
        var firstSlowPick = -1;
        for (var second = 1; second <= 120; second++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1) - TimeSpan.FromMilliseconds(10));
            var e = balancer.Pick(BalancerContext.None);
            if (e == set[1])
            {
                firstSlowPick = second;
                break;
            }

            Serve(e, TimeSpan.FromMilliseconds(10));
        }

        Assert.InRange(firstSlowPick, 35, 45);

        // Recovered: it now answers as fast as the other, and both share the traffic.
        var counts = new int[2];
        for (var i = 0; i < 2000; i++)
        {
            var e = balancer.Pick(BalancerContext.None);
            counts[Endpoints.IndexOf(set, e)]++;
            Serve(e, TimeSpan.FromMilliseconds(10));
        }

        Assert.InRange(counts[1], 700, 1300);
    }

    [Fact]
    public void Pick_FastEndpointBusy_CostCountsInFlightRequests()
    {
        var options = Options(new SeededRandom(2));
        var set = EndpointSet.Create(Endpoints.Addresses(2), options);
        var balancer = new PeakEwmaBalancer(set, options);
        Serve(set[0], TimeSpan.FromMilliseconds(10));
        Serve(set[1], TimeSpan.FromMilliseconds(100));

        Assert.Same(set[0], balancer.Pick(BalancerContext.None));

        // 10 ms * (20 + 1) = 210 ms > 100 ms * 1.
        for (var i = 0; i < 20; i++)
        {
            set[0].OnRequestStart();
        }

        Assert.Same(set[1], balancer.Pick(BalancerContext.None));
    }

    [Fact]
    public void Pick_EndpointWithoutSamples_TriedWhileIdleAvoidedWhileBusy()
    {
        var options = Options(new SeededRandom(4));
        var set = EndpointSet.Create(Endpoints.Addresses(2), options);
        var balancer = new PeakEwmaBalancer(set, options);
        Serve(set[0], TimeSpan.FromMilliseconds(10));

        // The new endpoint costs nothing while idle: it gets the next request.
        var picked = balancer.Pick(BalancerContext.None);
        Assert.Same(set[1], picked);

        // While that request is outstanding and unmeasured, it carries the penalty.
        var token = picked.OnRequestStart();
        Assert.Same(set[0], balancer.Pick(BalancerContext.None));
        Assert.Same(set[0], balancer.Pick(BalancerContext.None));

        _clock.Advance(TimeSpan.FromMilliseconds(5));
        picked.OnRequestEnd(token, success: true);
        Assert.Same(set[1], balancer.Pick(BalancerContext.None));
    }

    [Fact]
    public void Pick_Weighted_IdleProportionsFollowWeights()
    {
        var options = Options(new SeededRandom(13));
        var balancer = new PeakEwmaBalancer(EndpointSet.Create(Endpoints.Addresses(2, 1, 4), options), options);

        var counts = Endpoints.Counts(balancer, 10_000);

        Assert.InRange(counts[0], 1800, 2200);
    }

    [Fact]
    public void Pick_SingleEndpoint_DrawsNothing()
    {
        var options = Options(new ScriptedRandom());
        var balancer = new PeakEwmaBalancer(EndpointSet.Create(Endpoints.Addresses(1), options), options);

        Assert.Equal([0, 0], Endpoints.Picks(balancer, 2));
    }
}

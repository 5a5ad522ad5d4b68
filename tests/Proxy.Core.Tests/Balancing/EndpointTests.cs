using Proxy.Core.Balancing;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Balancing;

public sealed class EndpointTests
{
    private readonly ManualTimeProvider _clock = new();

    private Endpoint Create() => new(Endpoints.Address(0), 1, _clock, TimeSpan.FromSeconds(10));

    private void Serve(Endpoint endpoint, TimeSpan latency, bool success = true)
    {
        var token = endpoint.OnRequestStart();
        _clock.Advance(latency);
        endpoint.OnRequestEnd(token, success);
    }

    private static double Ms(TimeSpan? t) => t!.Value.TotalMilliseconds;

    [Fact]
    public void OnRequestStartEnd_CountsInFlight()
    {
        var e = Create();
        var a = e.OnRequestStart();
        e.OnRequestStart();
        Assert.Equal(2, e.InFlight);

        e.OnRequestEnd(a, success: true);
        e.EndWithoutSample();
        Assert.Equal(0, e.InFlight);
    }

    [Fact]
    public void LatencyEstimate_NoSample_IsNull()
    {
        var e = Create();
        e.OnRequestStart();
        e.EndWithoutSample();

        Assert.Null(e.LatencyEstimate);
    }

    [Fact]
    public void LatencyEstimate_FirstSample_IsTheSample_ThenDecaysWithTheTimeConstant()
    {
        var e = Create();
        Serve(e, TimeSpan.FromMilliseconds(100));
        Assert.Equal(100, Ms(e.LatencyEstimate), 3);

        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(100 * Math.Exp(-1), Ms(e.LatencyEstimate), 3);
    }

    [Fact]
    public void OnRequestEnd_HigherSample_ReplacesTheEstimate()
    {
        var e = Create();
        Serve(e, TimeSpan.FromMilliseconds(20));
        Serve(e, TimeSpan.FromMilliseconds(300));

        Assert.Equal(300, Ms(e.LatencyEstimate), 3);
    }

    [Fact]
    public void OnRequestEnd_LowerSample_BlendsByElapsedTime()
    {
        var e = Create();
        Serve(e, TimeSpan.FromMilliseconds(300));
        _clock.Advance(TimeSpan.FromSeconds(5));
        Serve(e, TimeSpan.FromMilliseconds(50));

        var w = Math.Exp(-5.05 / 10);
        Assert.Equal((300 * w) + (50 * (1 - w)), Ms(e.LatencyEstimate), 3);
    }

    [Fact]
    public void OnRequestEnd_FastFailure_DoesNotPullTheEstimateDown()
    {
        var e = Create();
        Serve(e, TimeSpan.FromMilliseconds(300));
        _clock.Advance(TimeSpan.FromSeconds(5));
        Serve(e, TimeSpan.FromMilliseconds(1), success: false);

        // (Precision 3: LatencyEstimate is a TimeSpan, 100 ns ticks.) Only the decay since the last sample applies, as if the failure had not been measured.
        Assert.Equal(300 * Math.Exp(-5.001 / 10), Ms(e.LatencyEstimate), 3);
    }

    [Fact]
    public void Constructor_WeightBelowOne_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Endpoint(Endpoints.Address(0), 0));
    }
}

using System.Net;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Core.Tcp;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Health;

/// <summary>Outlier detection on a fake clock: thresholds, ejection times, the max ejection percent, success rates, health check thresholds, panic.</summary>
public sealed class ServiceHealthTests
{
    private readonly ManualTimeProvider _time = new();

    private static readonly OutlierDetectionConfig Outlier = new()
    {
        Consecutive5xx = 3,
        ConsecutiveGatewayFailure = 0,
        ConsecutiveLocalOriginFailure = 2,
        Interval = TimeSpan.FromSeconds(1),
        BaseEjectionTime = TimeSpan.FromSeconds(10),
        MaxEjectionTime = TimeSpan.FromSeconds(25),
        MaxEjectionPercent = 50,
        SuccessRateMinimumHosts = 0,
    };

    private Service Service(int endpoints, OutlierDetectionConfig? outlier = null, HealthCheckConfig? check = null, BalancerKind balancer = BalancerKind.RoundRobin)
    {
        var addresses = Enumerable.Range(0, endpoints).Select(i => new IPEndPoint(IPAddress.Loopback, 9000 + i)).ToArray();
        var config = new ServiceConfig("web", [], addresses) { OutlierDetection = outlier ?? Outlier, HealthCheck = check, Balancer = balancer };
        var service = new ServiceRegistry([config], new BalancerOptions { Time = _time }).FindByName("web")!;
        Evaluated(service);
        return service;
    }

    // The outlier interval on the fake clock, as HealthMonitor runs it (its health check loops would probe real sockets).
    private void Evaluated(Service service)
    {
        var health = service.Health!;
        _time.CreateTimer(static h => ((ServiceHealth)h!).Evaluate(), health, health.OutlierDetection!.Interval, health.OutlierDetection.Interval);
    }

    private static void Report(Service s, int index, UpstreamResult result, int times = 1)
    {
        for (var i = 0; i < times; i++)
        {
            ServiceHealth.Report(s, s.Balancer.Endpoints[index], result);
        }
    }

    [Fact]
    public void Consecutive5xx_EjectsAtTheThreshold_NotBefore()
    {
        var s = Service(3);
        var e = s.Balancer.Endpoints[0];
        Report(s, 0, UpstreamResult.ServerError, 2);
        Assert.False(e.IsEjected);
        Assert.Equal(2, e.Consecutive5xx);
        Report(s, 0, UpstreamResult.ServerError);
        Assert.True(e.IsEjected);
        Assert.False(e.IsAvailable);
        Assert.Equal(1, e.TimesEjected);
        Assert.Equal(ServiceHealth.Reasons.Consecutive5xx, e.EjectionReason);
        Assert.Equal(0, e.Consecutive5xx);
    }

    [Fact]
    public void Success_ResetsTheCount()
    {
        var s = Service(3);
        Report(s, 0, UpstreamResult.ServerError, 2);
        Report(s, 0, UpstreamResult.Success);
        Report(s, 0, UpstreamResult.ServerError, 2);
        Assert.False(s.Balancer.Endpoints[0].IsEjected);
        Assert.Equal(2, s.Balancer.Endpoints[0].Consecutive5xx);
    }

    [Fact]
    public void GatewayFailure_ServerErrorBreaksTheRun()
    {
        var s = Service(3, Outlier with { Consecutive5xx = 0, ConsecutiveGatewayFailure = 2 });
        Report(s, 0, UpstreamResult.GatewayError);
        Report(s, 0, UpstreamResult.ServerError);
        Report(s, 0, UpstreamResult.GatewayError);
        Assert.False(s.Balancer.Endpoints[0].IsEjected);
        Report(s, 0, UpstreamResult.GatewayError);
        Assert.Equal(ServiceHealth.Reasons.ConsecutiveGateway, s.Balancer.Endpoints[0].EjectionReason);
    }

    [Fact]
    public void TcpConnectFailures_EjectAsLocalOrigin_ConnectedClearsTheCount()
    {
        var s = Service(3);
        var e = s.Balancer.Endpoints[1];
        ServiceHealth.ReportConnect(s, e, TcpConnectOutcome.Failed);
        ServiceHealth.ReportConnect(s, e, TcpConnectOutcome.Connected);
        ServiceHealth.ReportConnect(s, e, TcpConnectOutcome.Failed);
        ServiceHealth.ReportConnect(s, e, TcpConnectOutcome.Cancelled);
        Assert.False(e.IsEjected);
        ServiceHealth.ReportConnect(s, e, TcpConnectOutcome.Failed);
        Assert.True(e.IsEjected);
        Assert.Equal(ServiceHealth.Reasons.ConsecutiveLocalOrigin, e.EjectionReason);
    }

    [Fact]
    public void Ejected_BackAtTheFirstIntervalAfterItsTime_TimeGrowsWithEachEjection_Capped()
    {
        var s = Service(3);
        var e = s.Balancer.Endpoints[0];
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        Assert.True(e.IsEjected);

        // First ejection: 10 s.
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.True(e.IsEjected);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(e.IsEjected);
        Assert.True(e.IsAvailable);

        // Second, right away: 20 s.
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        Assert.Equal(2, e.TimesEjected);
        _time.Advance(TimeSpan.FromSeconds(19));
        Assert.True(e.IsEjected);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(e.IsEjected);

        // Third: 30 s, capped at maxEjectionTime 25 s.
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        _time.Advance(TimeSpan.FromSeconds(24));
        Assert.True(e.IsEjected);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(e.IsEjected);
        Assert.Equal(3, e.EjectionMultiplier);
    }

    [Fact]
    public void Multiplier_ShrinksWhileTheEndpointBehaves()
    {
        var s = Service(3);
        var e = s.Balancer.Endpoints[0];
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.False(e.IsEjected);
        Assert.Equal(1, e.EjectionMultiplier);

        // Back for as long as the ejection lasted (10 s): one step down.
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(1, e.EjectionMultiplier);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, e.EjectionMultiplier);

        // The next ejection is a first one again: 10 s.
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.False(e.IsEjected);
    }

    [Fact]
    public void MaxEjectionPercent_OneAlwaysMay_MoreOnlyWithinThePercentage()
    {
        var s = Service(4, Outlier with { MaxEjectionPercent = 25 });
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        Report(s, 1, UpstreamResult.LocalOriginFailure, 2);
        Assert.True(s.Balancer.Endpoints[0].IsEjected);
        Assert.False(s.Balancer.Endpoints[1].IsEjected);

        // Another run of failures tries again (and is refused again).
        Report(s, 1, UpstreamResult.LocalOriginFailure, 2);
        Assert.False(s.Balancer.Endpoints[1].IsEjected);

        var half = Service(4, Outlier with { MaxEjectionPercent = 50 });
        for (var i = 0; i < 3; i++)
        {
            Report(half, i, UpstreamResult.LocalOriginFailure, 2);
        }

        Assert.Equal(2, half.Balancer.Endpoints.AsSpan().ToArray().Count(static e => e.IsEjected));

        var none = Service(4, Outlier with { MaxEjectionPercent = 0 });
        Report(none, 0, UpstreamResult.LocalOriginFailure, 2);
        Report(none, 1, UpstreamResult.LocalOriginFailure, 2);
        Assert.Equal(1, none.Balancer.Endpoints.AsSpan().ToArray().Count(static e => e.IsEjected));
    }

    [Fact]
    public void SuccessRate_AnOutlierFarBelowItsPeers_Ejected()
    {
        var s = Service(5, Outlier with { Consecutive5xx = 0, ConsecutiveLocalOriginFailure = 0, SuccessRateMinimumHosts = 5, SuccessRateRequestVolume = 50, SuccessRateStdevFactor = 1.5 });
        for (var i = 0; i < 5; i++)
        {
            for (var r = 0; r < 100; r++)
            {
                // Endpoint 3 fails half of its requests, the others one in a hundred.
                var fail = i == 3 ? r % 2 == 0 : r == 0;
                Report(s, i, fail ? UpstreamResult.ServerError : UpstreamResult.Success);
            }
        }

        _time.Advance(TimeSpan.FromSeconds(1));
        var set = s.Balancer.Endpoints;
        Assert.True(set[3].IsEjected);
        Assert.Equal(ServiceHealth.Reasons.SuccessRate, set[3].EjectionReason);
        Assert.Equal(50, set[3].LastSuccessRate);
        Assert.Equal(99, set[0].LastSuccessRate);
        Assert.False(set[0].IsEjected);
        Assert.Equal(0, set[0].WindowRequests);
    }

    [Fact]
    public void SuccessRate_TooFewHostsWithTheVolume_NothingEjected()
    {
        var s = Service(5, Outlier with { Consecutive5xx = 0, ConsecutiveLocalOriginFailure = 0, SuccessRateMinimumHosts = 5, SuccessRateRequestVolume = 50 });
        for (var i = 0; i < 5; i++)
        {
            // Endpoint 4 is below the volume: only four endpoints count.
            for (var r = 0; r < (i == 4 ? 10 : 100); r++)
            {
                Report(s, i, i == 3 && r % 2 == 0 ? UpstreamResult.ServerError : UpstreamResult.Success);
            }
        }

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.DoesNotContain(s.Balancer.Endpoints.AsSpan().ToArray(), static e => e.IsEjected);
    }

    [Fact]
    public void WithoutOutlierDetection_CountersOnly()
    {
        var config = new ServiceConfig("plain", [], [new IPEndPoint(IPAddress.Loopback, 9000)]);
        var s = new ServiceRegistry([config]).FindByName("plain")!;
        Assert.Null(s.Health);
        Report(s, 0, UpstreamResult.GatewayError, 10);
        var e = s.Balancer.Endpoints[0];
        Assert.False(e.IsEjected);
        Assert.Equal(10, e.Consecutive5xx);
        Assert.Equal(10, e.TotalFailures);
    }

    [Fact]
    public void HealthCheck_Thresholds_UnhealthyThenHealthyAgain()
    {
        var s = Service(2, check: new HealthCheckConfig { HealthyThreshold = 2, UnhealthyThreshold = 3 });
        var health = s.Health!;
        var e = s.Balancer.Endpoints[0];
        Assert.Equal(HealthCheckStatus.Unknown, e.CheckStatus);
        health.OnCheckResult(e, healthy: true, null);
        Assert.Equal(HealthCheckStatus.Healthy, e.CheckStatus);

        health.OnCheckResult(e, healthy: false, "answered status 503");
        health.OnCheckResult(e, healthy: false, "answered status 503");
        Assert.True(e.IsAvailable);
        health.OnCheckResult(e, healthy: false, "connection refused");
        Assert.Equal(HealthCheckStatus.Unhealthy, e.CheckStatus);
        Assert.False(e.IsAvailable);
        Assert.Equal("connection refused", e.CheckDetail);

        health.OnCheckResult(e, healthy: true, null);
        Assert.False(e.IsAvailable);
        health.OnCheckResult(e, healthy: true, null);
        Assert.True(e.IsAvailable);
        Assert.Null(e.CheckDetail);
    }

    [Fact]
    public void Unhealthy_AndEjected_BothMustClear()
    {
        var s = Service(2, check: new HealthCheckConfig { HealthyThreshold = 1, UnhealthyThreshold = 1 });
        var e = s.Balancer.Endpoints[0];
        s.Health!.OnCheckResult(e, healthy: false, "connection refused");
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        Assert.True(e.IsEjected && e.IsUnhealthy);
        s.Health.OnCheckResult(e, healthy: true, null);
        Assert.False(e.IsAvailable);
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(e.IsAvailable);
    }

    [Fact]
    public void AllOut_Panic_PicksStillAnswered_ThenOver()
    {
        var s = Service(2, Outlier with { MaxEjectionPercent = 100 });
        Report(s, 0, UpstreamResult.LocalOriginFailure, 2);
        Assert.False(s.Health!.InPanic);
        Report(s, 1, UpstreamResult.LocalOriginFailure, 2);
        Assert.True(s.Health.InPanic);

        var picked = s.Pick(null);
        Assert.False(picked.IsAvailable);
        Assert.Equal(1, s.Health.PanicPicks);

        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.False(s.Health.InPanic);
    }

    [Fact]
    public void Subsets_ShareTheServiceState()
    {
        var addresses = new[] { new IPEndPoint(IPAddress.Loopback, 9000), new IPEndPoint(IPAddress.Loopback, 9001) };
        var config = new ServiceConfig("web", [], addresses) { OutlierDetection = Outlier, Subsets = [new SubsetConfig("v2", [addresses[1]])] };
        var s = new ServiceRegistry([config], new BalancerOptions { Time = _time }).FindByName("web")!;
        Evaluated(s);
        var v2 = s.FindSubset("v2")!;
        Assert.Same(s.Health, v2.Health);
        ServiceHealth.Report(v2, v2.Balancer.Endpoints[0], UpstreamResult.LocalOriginFailure);
        ServiceHealth.Report(v2, v2.Balancer.Endpoints[0], UpstreamResult.LocalOriginFailure);
        Assert.True(s.Balancer.Endpoints[1].IsEjected);
        Assert.All(Enumerable.Range(0, 10), _ => Assert.Same(s.Balancer.Endpoints[0], s.Pick(null)));
    }
}

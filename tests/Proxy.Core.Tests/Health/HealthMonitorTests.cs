using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Health;

/// <summary>The monitor's check loop on a fake clock (rounds) against a real listener (checks): starts at once, one round per interval, stops on dispose.</summary>
public sealed class HealthMonitorTests
{
    [Fact]
    public async Task Checks_StartAtOnce_OneRoundPerInterval_StopOnDispose()
    {
        var time = new ManualTimeProvider();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var dead = DeadEndPoint();
        var config = new ServiceConfig("web", [], [(IPEndPoint)listener.LocalEndpoint, dead])
        {
            HealthCheck = new HealthCheckConfig { Type = HealthCheckType.Tcp, Interval = TimeSpan.FromSeconds(5), UnhealthyThreshold = 2, HealthyThreshold = 1 },
        };
        var service = new ServiceRegistry([config], new BalancerOptions { Time = time }).FindByName("web")!;
        var monitor = HealthMonitor.Start([service], null, NullLoggerFactory.Instance);
        Assert.Single(monitor.Services);
        var set = service.Balancer.Endpoints;

        // Round 1 at start: the listener's endpoint is healthy at its first success; the dead one has one failure of two.
        await WaitForAsync(() => set[0].CheckStatus == HealthCheckStatus.Healthy && set[1].CheckDetail is not null);
        Assert.Equal(HealthCheckStatus.Unknown, set[1].CheckStatus);
        Assert.True(set[1].IsAvailable);

        // Round 2 only when the interval has passed (advanced until the loop's wait is armed and fires).
        await WaitForAsync(() =>
        {
            time.Advance(TimeSpan.FromSeconds(5));
            return set[1].CheckStatus == HealthCheckStatus.Unhealthy;
        });
        Assert.False(set[1].IsAvailable);
        Assert.True(set[0].IsAvailable);

        Assert.True(monitor.ChecksRunning);
        await monitor.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
        Assert.False(monitor.ChecksRunning);
        await monitor.DisposeAsync();
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        using var deadline = new CancellationTokenSource(TestTimeouts.Short);
        while (!condition())
        {
            await Task.Delay(10, deadline.Token);
        }
    }

    private static IPEndPoint DeadEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }
}

using Microsoft.Extensions.Logging;
using Proxy.Core.Discovery;

namespace Proxy.Core.Health;

/// <summary>
/// Runs the outlier detection intervals and the active health check loops of a set of services (one registry): started
/// with the sidecar, stopped on dispose. Each round reads the service's current endpoints, so endpoints that discovery
/// or a reload adds are checked from the next round on, and removed ones are no longer checked.
/// </summary>
public sealed class HealthMonitor : IAsyncDisposable
{
    private readonly List<ServiceHealth> _services = [];
    private readonly List<ITimer> _timers = [];
    private readonly List<Task> _loops = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly HealthMetrics? _metrics;

    private HealthMonitor(HealthMetrics? metrics) => _metrics = metrics;

    /// <summary>Starts monitoring every service of <paramref name="services"/> that has outlier detection or a health check.</summary>
    public static HealthMonitor Start(IEnumerable<Service> services, HealthMetrics? metrics, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var monitor = new HealthMonitor(metrics);
        var logger = loggerFactory.CreateLogger<ServiceHealth>();
        foreach (var service in services)
        {
            if (service.Health is not { } health)
            {
                continue;
            }

            health.Attach(metrics, logger);
            metrics?.Add(health);
            monitor._services.Add(health);
            if (health.OutlierDetection is { } outlier)
            {
                monitor._timers.Add(health.Time.CreateTimer(static s => ((ServiceHealth)s!).Evaluate(), health, outlier.Interval, outlier.Interval));
            }

            if (health.HealthCheck is { } check)
            {
                monitor._loops.Add(RunChecksAsync(health, new HealthProbe(check, service.Name, health.Time), check.Interval, monitor._stop.Token));
            }
        }

        return monitor;
    }

    /// <summary>The services monitored (those with outlier detection or a health check).</summary>
    public IReadOnlyList<ServiceHealth> Services => _services;

    private static async Task RunChecksAsync(ServiceHealth health, HealthProbe probe, TimeSpan interval, CancellationToken stop)
    {
        // Leave the caller's (start-up) thread at once.
        await Task.Yield();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var set = health.CurrentEndpoints;
                var checks = new Task[set.Count];
                for (var i = 0; i < checks.Length; i++)
                {
                    checks[i] = CheckOneAsync(health, probe, set[i], stop);
                }

                await Task.WhenAll(checks).ConfigureAwait(false);
                await Task.Delay(interval, health.Time, stop).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private static async Task CheckOneAsync(ServiceHealth health, HealthProbe probe, Balancing.Endpoint endpoint, CancellationToken stop)
    {
        var (healthy, detail) = await probe.CheckAsync(endpoint.Address.EndPoint, stop).ConfigureAwait(false);
        health.OnCheckResult(endpoint, healthy, detail);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var timer in _timers)
        {
            await timer.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A check stuck past its own timeout: abandoned (its socket closes when it ends).
        }

        foreach (var service in _services)
        {
            _metrics?.Remove(service);
        }

        _stop.Dispose();
    }
}

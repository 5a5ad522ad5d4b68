using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Proxy.Core.Health;

/// <summary>
/// Instruments of outlier detection, active health checks and the balancers' panic mode, on the proxy's meter:
/// <list type="bullet">
/// <item><c>proxy_outlier_ejections_total{service,reason}</c>: ejections (reason: consecutive-5xx, consecutive-gateway-failure,
///       consecutive-local-origin-failure, success-rate);</item>
/// <item><c>proxy_outlier_ejections_overflow_total{service,reason}</c>: ejections <c>maxEjectionPercent</c> prevented;</item>
/// <item><c>proxy_outlier_ejected_endpoints{service}</c>: endpoints ejected now (gauge);</item>
/// <item><c>proxy_health_checks_total{service,result}</c>: active health checks by result (healthy, unhealthy);</item>
/// <item><c>proxy_health_unhealthy_endpoints{service}</c>: endpoints failing their health check now (gauge);</item>
/// <item><c>proxy_balancer_panic_total{service}</c>: picks made while no endpoint of the set was available (panic mode).</item>
/// </list>
/// </summary>
public sealed class HealthMetrics
{
    private readonly ConcurrentDictionary<ServiceHealth, byte> _services = new();

    public HealthMetrics(Meter meter)
    {
        ArgumentNullException.ThrowIfNull(meter);
        Ejections = meter.CreateCounter<long>("proxy_outlier_ejections", "{ejection}", "Endpoints ejected by outlier detection, by service and reason.");
        EjectionsOverflow = meter.CreateCounter<long>("proxy_outlier_ejections_overflow", "{ejection}", "Ejections outlier detection wanted but maxEjectionPercent prevented, by service and reason.");
        HealthChecks = meter.CreateCounter<long>("proxy_health_checks", "{check}", "Active health checks, by service and result (healthy, unhealthy).");
        Panics = meter.CreateCounter<long>("proxy_balancer_panic", "{pick}", "Endpoint picks made while every endpoint of the set was ejected or unhealthy (panic: balanced over all).");
        meter.CreateObservableGauge("proxy_outlier_ejected_endpoints", () => Observe(static e => e.IsEjected), "{endpoint}", "Endpoints ejected by outlier detection now, by service.");
        meter.CreateObservableGauge("proxy_health_unhealthy_endpoints", () => Observe(static e => e.IsUnhealthy), "{endpoint}", "Endpoints failing their active health check now, by service.");
    }

    public Counter<long> Ejections { get; }

    public Counter<long> EjectionsOverflow { get; }

    public Counter<long> HealthChecks { get; }

    public Counter<long> Panics { get; }

    internal void Add(ServiceHealth service) => _services.TryAdd(service, 0);

    internal void Remove(ServiceHealth service) => _services.TryRemove(service, out _);

    private IEnumerable<Measurement<long>> Observe(Func<Balancing.Endpoint, bool> counted)
    {
        foreach (var service in _services.Keys)
        {
            if (!service.IsBound)
            {
                continue;
            }

            long n = 0;
            var set = service.CurrentEndpoints;
            for (var i = 0; i < set.Count; i++)
            {
                n += counted(set[i]) ? 1 : 0;
            }

            yield return new Measurement<long>(n, new KeyValuePair<string, object?>("service", service.ServiceName));
        }
    }
}

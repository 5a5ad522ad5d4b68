using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Sidecar.Admin;

namespace Proxy.Sidecar.App;

/// <summary>
/// Outlier detection and active health checks (issue 6, parts 5 and 6): the services' intervals and check loops run
/// from start to dispose (<see cref="HealthMonitor"/>); <c>/clusters</c> on the admin listener shows their state.
/// </summary>
internal sealed partial class SidecarHost
{
    private HealthMonitor? _healthMonitor;
    private HealthMetrics? _healthMetrics;
    private ClustersReport? _clusters;

    /// <summary>The outlier detection and health check state of the services (after <see cref="StartAsync"/>).</summary>
    public HealthMonitor? Health => _healthMonitor;

    private void StartHealth(ServiceRegistry services)
    {
        _healthMetrics ??= new HealthMetrics(Metrics.Meter);
        _healthMonitor = HealthMonitor.Start(services.Services, _healthMetrics, _loggerFactory);
        _clusters = new ClustersReport(() => services.Services);
    }

    private async ValueTask StopHealthAsync()
    {
        if (_healthMonitor is not null)
        {
            await _healthMonitor.DisposeAsync();
        }
    }
}

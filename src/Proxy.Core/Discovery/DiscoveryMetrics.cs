using System.Diagnostics.Metrics;

namespace Proxy.Core.Discovery;

/// <summary>
/// Service discovery's metrics, on the proxy's meter:
/// <list type="bullet">
/// <item><c>proxy_dns_lookups_total{service,result}</c>: DNS lookups by result (success, empty, nxdomain, timeout, error);</item>
/// <item><c>proxy_service_endpoints{service}</c>: endpoints each service has now (every service, static or DNS), read
/// from the registry being tracked when exported.</item>
/// </list>
/// </summary>
public sealed class DiscoveryMetrics
{
    private volatile ServiceRegistry? _registry;

    public DiscoveryMetrics(Meter meter)
    {
        ArgumentNullException.ThrowIfNull(meter);
        DnsLookups = meter.CreateCounter<long>("proxy_dns_lookups", "{lookup}", "DNS lookups of services' names, by service and result (success, empty, nxdomain, timeout, error).");
        ServiceEndpoints = meter.CreateObservableGauge("proxy_service_endpoints", ObserveEndpoints, "{endpoint}", "Endpoints each service has now (static and from DNS).");
    }

    /// <summary>Tags "service", "result". Exported as <c>proxy_dns_lookups_total</c>.</summary>
    public Counter<long> DnsLookups { get; }

    /// <summary>Tag "service".</summary>
    public ObservableGauge<long> ServiceEndpoints { get; }

    /// <summary>The registry whose services <c>proxy_service_endpoints</c> reports (a reload hands over the new one).</summary>
    public void Track(ServiceRegistry registry) => _registry = registry;

    internal void CountLookup(string service, DnsLookupResult result)
        => DnsLookups.Add(1, new KeyValuePair<string, object?>("service", service), new KeyValuePair<string, object?>("result", DnsAnswer.ResultName(result)));

    private IEnumerable<Measurement<long>> ObserveEndpoints()
    {
        if (_registry is not { } registry)
        {
            yield break;
        }

        foreach (var service in registry.Services)
        {
            yield return new Measurement<long>(service.EndpointCount, new KeyValuePair<string, object?>("service", service.Name));
        }
    }
}

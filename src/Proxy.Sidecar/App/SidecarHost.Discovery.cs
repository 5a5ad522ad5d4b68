using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Core.Discovery;
using Proxy.Core.Upstream;

namespace Proxy.Sidecar.App;

/// <summary>
/// Service discovery in the sidecar: endpoints that leave a service are retired from every upstream pool (idle
/// connections closed, busy ones closed when their exchange ends), services with <c>dns</c> follow their names
/// (<see cref="DnsDiscovery"/>), and <c>proxy_service_endpoints</c> reports every service's endpoint count.
/// </summary>
internal sealed partial class SidecarHost
{
    private DnsDiscovery? _dnsDiscovery;

    /// <summary>The services in force (after <see cref="StartAsync"/>).</summary>
    internal ServiceRegistry? Services { get; private set; }

    /// <summary>DNS discovery (null when no service has <c>dns</c>).</summary>
    internal DnsDiscovery? DnsDiscovery => _dnsDiscovery;

    /// <summary>Discovery metrics (lookups, endpoints per service).</summary>
    internal DiscoveryMetrics? DiscoveryMetrics { get; private set; }

    /// <summary>
    /// Wires <paramref name="services"/> to the pools and, when some service has <c>dns</c>, starts DNS discovery and waits
    /// (at most twice the DNS timeout) for the first answers, so the listeners open with the endpoints DNS has.
    /// </summary>
    private async Task StartDiscoveryAsync(ServiceRegistry services, ILogger logger, CancellationToken cancellationToken)
    {
        Services = services;
        DiscoveryMetrics ??= new DiscoveryMetrics(Metrics.Meter);
        DiscoveryMetrics.Track(services);
        services.EndpointRetired += RetireEverywhere;
        if (!services.Services.Any(static s => s.Config?.Dns is not null))
        {
            return;
        }

        var resolver = new DnsClientResolver(_config.Dns);
        var servers = string.Join(", ", resolver.Servers.Select(static s => s.ToString()));
        LogDnsServers(logger, servers);
        _dnsDiscovery = new DnsDiscovery(services, resolver, DiscoveryMetrics, _loggerFactory.CreateLogger<DnsDiscovery>());
        await _dnsDiscovery.StartAsync(_config.Dns.Timeout * 2, cancellationToken);
    }

    /// <summary>An address no service has any more: every pool gives it up (requests in flight to it finish first).</summary>
    private void RetireEverywhere(UpstreamAddress address)
    {
        _pool?.Retire(address);
        _inboundPool?.Retire(address);
        _http2Pool?.Retire(address);
        _inboundHttp2Pool?.Retire(address);
        foreach (var pool in _servicePools)
        {
            (pool as IEndpointRetirement)?.Retire(address);
        }
    }

    private async ValueTask DisposeDiscoveryAsync()
    {
        if (_dnsDiscovery is not null)
        {
            await _dnsDiscovery.DisposeAsync();
        }
    }

    [LoggerMessage(EventId = 4501, Level = LogLevel.Information, Message = "DNS discovery asks {Servers}")]
    private static partial void LogDnsServers(ILogger logger, string servers);
}

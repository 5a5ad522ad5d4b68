using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Proxy.Core.Limits;

namespace Proxy.Core.Metrics;

/// <summary>Circuit breakers and local rate limits (issue 6 parts 4 and 7).</summary>
public sealed partial class ProxyMetrics
{
    private readonly ConcurrentDictionary<CircuitBreaker, byte> _breakers = new();

    /// <summary>Tags "service", "limit" (maxConnections, maxPendingRequests, maxRequests, maxRetries). Exported as <c>proxy_circuit_breaker_overflow_total</c>.</summary>
    public Counter<long> CircuitBreakerOverflows { get; }

    /// <summary>Tag "service": requests that waited for a connection at the service's <c>maxConnections</c>. Exported as <c>proxy_circuit_breaker_connection_waits_total</c>.</summary>
    public Counter<long> CircuitBreakerConnectionWaits { get; }

    /// <summary>Tags "service", "limit": the count the limit is checked against now. Exported as <c>proxy_circuit_breaker_current</c>.</summary>
    public ObservableGauge<long> CircuitBreakerOpen { get; }

    /// <summary>Tags "listener", "service", "route" ("" for a service's own limit). Exported as <c>proxy_http_rate_limited_total</c>.</summary>
    public Counter<long> HttpRateLimited { get; }

    /// <summary>Counts <paramref name="breaker"/>'s refusals and observes its counts (until <see cref="Untrack"/>).</summary>
    public void Track(CircuitBreaker breaker)
    {
        ArgumentNullException.ThrowIfNull(breaker);
        breaker.OnOverflow = (b, limit) => CircuitBreakerOverflows.Add(1,
            new KeyValuePair<string, object?>("service", b.Service), new KeyValuePair<string, object?>("limit", CircuitBreaker.NameOf(limit)));
        breaker.OnConnectionWait = b => CircuitBreakerConnectionWaits.Add(1, new KeyValuePair<string, object?>("service", b.Service));
        _breakers.TryAdd(breaker, 0);
    }

    public void Untrack(CircuitBreaker breaker) => _breakers.TryRemove(breaker, out _);

    private IEnumerable<Measurement<long>> ObserveCircuitBreakers()
    {
        foreach (var (b, _) in _breakers)
        {
            var service = new KeyValuePair<string, object?>("service", b.Service);
            yield return new Measurement<long>(b.Connections, service, new KeyValuePair<string, object?>("limit", "maxConnections"));
            yield return new Measurement<long>(b.PendingRequests, service, new KeyValuePair<string, object?>("limit", "maxPendingRequests"));
            yield return new Measurement<long>(b.Requests, service, new KeyValuePair<string, object?>("limit", "maxRequests"));
            yield return new Measurement<long>(b.Retries, service, new KeyValuePair<string, object?>("limit", "maxRetries"));
        }
    }
}

using System.Diagnostics;
using Proxy.Core.Metrics;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Telemetry;

/// <summary>
/// The HTTP forwarder's telemetry: per-request metrics on <see cref="ProxyMetrics"/> (names in <c>README.md</c>
/// beside this file) and, when one is given, the JSON access log. Allocation-free per request: tags are
/// <see cref="TagList"/>s on the stack holding the caller's strings and interned constants (status class, error
/// code), so the exporter finds an existing series without allocating.
/// </summary>
public sealed class HttpTelemetry : IHttpRequestObserver
{
    /// <summary>Status class tag values; "none" when no response was sent (status 0) or the status is out of range.</summary>
    public const string StatusNone = "none";

    private readonly ProxyMetrics _metrics;
    private readonly JsonAccessLog? _accessLog;

    /// <param name="metrics">Where the instruments live (the sidecar's one <see cref="ProxyMetrics"/>).</param>
    /// <param name="accessLog">The access log, or null when it is off (the default). Not owned: dispose it yourself.</param>
    public HttpTelemetry(ProxyMetrics metrics, JsonAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        _metrics = metrics;
        _accessLog = accessLog;
    }

    public JsonAccessLog? AccessLog => _accessLog;

    public void OnRetry(string listener, string service, string reason)
        => _metrics.HttpRetries.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("service", service), new KeyValuePair<string, object?>("reason", reason));

    public void OnRetryBudgetExhausted(string listener, string service)
        => _metrics.HttpRetryBudgetExhausted.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("service", service));

    public void OnFaultInjected(string listener, string route, string kind)
        => _metrics.HttpFaultsInjected.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("kind", kind));

    public void OnRateLimited(string listener, string service, string route)
        => _metrics.HttpRateLimited.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("service", service), new KeyValuePair<string, object?>("route", route));

    public void OnRequestRouted(string listener, string service, string route)
    {
        // Not guarded by Enabled: the -1 in OnRequestCompleted is not either, so a listener that starts between the two
        // cannot see the gauge go negative. The forwarder passes the same listener and service in both calls.
        _metrics.HttpRequestsInFlight.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("service", service));
    }

    public void OnRequestCompleted(in HttpRequestRecord record)
    {
        RecordMetrics(in record);
        _accessLog?.Write(in record);
    }

    private void RecordMetrics(in HttpRequestRecord record)
    {
        var listenerTag = new KeyValuePair<string, object?>("listener", record.Listener);
        var serviceTag = new KeyValuePair<string, object?>("service", record.Service);
        var routeTag = new KeyValuePair<string, object?>("route", record.Route);
        var statusTag = new KeyValuePair<string, object?>("status_class", StatusClass(record.StatusCode));

        var requests = _metrics.HttpRequests;
        if (requests.Enabled)
        {
            var tags = new TagList { listenerTag, serviceTag, routeTag, statusTag, new("error", ErrorTag(record.Error)) };
            requests.Add(1, in tags);
        }

        var duration = _metrics.HttpRequestDuration;
        if (duration.Enabled)
        {
            var tags = new TagList { listenerTag, serviceTag, routeTag, statusTag };
            duration.Record(record.Duration.TotalSeconds, in tags);
        }

        if (record.UpstreamDuration is { } upstream)
        {
            _metrics.HttpUpstreamDuration.Record(upstream.TotalSeconds, serviceTag);
        }

        if (record.Routed)
        {
            _metrics.HttpRequestsInFlight.Add(-1, listenerTag, serviceTag);
        }

        // Zero-byte bodies (most GETs, most proxy-made responses) skip the exporter entirely.
        if (record.RequestBytes > 0)
        {
            _metrics.HttpRequestBodyBytes.Add(record.RequestBytes, listenerTag, serviceTag);
        }

        if (record.ResponseBytes > 0)
        {
            _metrics.HttpResponseBodyBytes.Add(record.ResponseBytes, listenerTag, serviceTag);
        }
    }

    /// <summary>"1xx" to "5xx" for 100..599; <see cref="StatusNone"/> otherwise (0: no response was sent).</summary>
    public static string StatusClass(int statusCode) => (statusCode / 100) switch
    {
        _ when statusCode < 100 => StatusNone,
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => StatusNone,
    };

    /// <summary>
    /// The "error" tag: the <see cref="ProxyErrors"/> code (as its interned constant), "" for none, and "other" for
    /// a string outside the closed set, so a caller's mistake cannot grow the series without bound.
    /// </summary>
    public static string ErrorTag(string? error) => error switch
    {
        null or "" => "",
        ProxyErrors.BadRequest => ProxyErrors.BadRequest,
        ProxyErrors.NoRoute => ProxyErrors.NoRoute,
        ProxyErrors.NoEndpoint => ProxyErrors.NoEndpoint,
        ProxyErrors.UpstreamRefused => ProxyErrors.UpstreamRefused,
        ProxyErrors.UpstreamConnectTimeout => ProxyErrors.UpstreamConnectTimeout,
        ProxyErrors.UpstreamConnectError => ProxyErrors.UpstreamConnectError,
        ProxyErrors.PoolExhausted => ProxyErrors.PoolExhausted,
        ProxyErrors.UpstreamProtocol => ProxyErrors.UpstreamProtocol,
        ProxyErrors.UpstreamTls => ProxyErrors.UpstreamTls,
        ProxyErrors.UpstreamReset => ProxyErrors.UpstreamReset,
        ProxyErrors.UpstreamClosed => ProxyErrors.UpstreamClosed,
        ProxyErrors.UpstreamBadResponse => ProxyErrors.UpstreamBadResponse,
        ProxyErrors.ResponseTimeout => ProxyErrors.ResponseTimeout,
        ProxyErrors.DeadlineExceeded => ProxyErrors.DeadlineExceeded,
        ProxyErrors.RequestTimeout => ProxyErrors.RequestTimeout,
        ProxyErrors.PerTryTimeout => ProxyErrors.PerTryTimeout,
        ProxyErrors.IdleTimeout => ProxyErrors.IdleTimeout,
        ProxyErrors.HeaderTimeout => ProxyErrors.HeaderTimeout,
        ProxyErrors.FaultAbort => ProxyErrors.FaultAbort,
        ProxyErrors.ClientClosed => ProxyErrors.ClientClosed,
        ProxyErrors.Overflow => ProxyErrors.Overflow,
        ProxyErrors.RateLimited => ProxyErrors.RateLimited,
        _ => "other",
    };
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Proxy.Core.Metrics;

/// <summary>
/// The proxy's instruments (System.Diagnostics.Metrics). The admin listener exports them in
/// Prometheus text format. Tags are bounded: listener name, service name, failure cause.
/// </summary>
public sealed partial class ProxyMetrics : IDisposable
{
    public const string MeterName = "Proxy";

    private readonly Meter _meter;

    public Meter Meter => _meter;

    public ProxyMetrics(IMeterFactory? factory = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        ConnectionsOpened = _meter.CreateCounter<long>("proxy_tcp_connections_opened", "{connection}", "Downstream connections accepted.");
        ConnectionsActive = _meter.CreateUpDownCounter<long>("proxy_tcp_connections_active", "{connection}", "Downstream connections open now.");
        BytesToUpstream = _meter.CreateCounter<long>("proxy_tcp_bytes_to_upstream", "By", "Bytes forwarded from clients to upstreams.");
        BytesToDownstream = _meter.CreateCounter<long>("proxy_tcp_bytes_to_downstream", "By", "Bytes forwarded from upstreams to clients.");
        ConnectFailures = _meter.CreateCounter<long>("proxy_tcp_connect_failures", "{connection}", "Connections the proxy could not complete, by cause.");
        ConnectionsRejected = _meter.CreateCounter<long>("proxy_tcp_connections_rejected", "{connection}", "Connections closed because a limit was reached.");
        DetectTotal = _meter.CreateCounter<long>("proxy_detect", "{connection}", "Protocol detections on the capture listeners, by detected protocol.");
        PoolConnectionsCreated = _meter.CreateCounter<long>("proxy_pool_connections_created", "{connection}", "Upstream connections opened by the connection pools.");
        PoolConnectionsReused = _meter.CreateCounter<long>("proxy_pool_connections_reused", "{connection}", "Rents served by an idle pooled upstream connection.");
        PoolConnectionsIdle = _meter.CreateUpDownCounter<long>("proxy_pool_connections_idle", "{connection}", "Idle upstream connections kept by the pools now.");
        PoolConnectionsDiscarded = _meter.CreateCounter<long>("proxy_pool_connections_discarded", "{connection}", "Pooled upstream connections closed by the pool, by cause.");

        var seconds = new InstrumentAdvice<double> { HistogramBucketBoundaries = HttpDurationBuckets };
        HttpRequests = _meter.CreateCounter<long>("proxy_http_requests", "{request}", "HTTP requests completed, by listener, service, route, status class and proxy error.");
        HttpRequestDuration = _meter.CreateHistogram("proxy_http_request_duration_seconds", "s", "HTTP request duration: request head parsed to response fully sent.", tags: null, advice: seconds);
        HttpUpstreamDuration = _meter.CreateHistogram("proxy_http_upstream_duration_seconds", "s", "Upstream latency: request head written upstream to response head read.", tags: null, advice: seconds);
        HttpRequestsInFlight = _meter.CreateUpDownCounter<long>("proxy_http_requests_in_flight", "{request}", "HTTP requests routed and not yet completed.");
        HttpRequestBodyBytes = _meter.CreateCounter<long>("proxy_http_request_body_bytes", "By", "HTTP request body bytes read from clients (payload, without chunk framing).");
        HttpResponseBodyBytes = _meter.CreateCounter<long>("proxy_http_response_body_bytes", "By", "HTTP response body bytes sent to clients (payload, without chunk framing).");
        AccessLogDropped = _meter.CreateCounter<long>("proxy_access_log_dropped", "{entry}", "Access log entries dropped because the writer fell behind.");
        AuthzDecisions = _meter.CreateCounter<long>("proxy_authz_decisions", "{decision}", "Authorization policy decisions, by listener, decision (allow, deny) and policy.");

        ProcessAllocatedBytes = _meter.CreateObservableCounter(
            "proxy_process_allocated_bytes",
            static () => GC.GetTotalAllocatedBytes(precise: false),
            "By",
            "Bytes allocated on the managed heap by the whole process since it started (GC.GetTotalAllocatedBytes, not precise).");

        // TLS certificates (mesh identity): see the "TLS certificates" block below.
        CertificateReloads = _meter.CreateCounter<long>("proxy_tls_certificate_reloads", "{reload}", "Certificate file reloads, by certificate name and result (success, failure).");
        CertificateExpirySeconds = _meter.CreateObservableGauge(
            "proxy_tls_certificate_expiry_seconds",
            ObserveCertificateExpiries,
            "s",
            "Seconds until each certificate the proxy presents expires (negative once expired), by certificate name.");
        // --- TLS termination and origination (Proxy.Tls) ---
        TlsHandshakes = _meter.CreateCounter<long>("proxy_tls_handshakes", "{handshake}", "TLS handshakes by listener (or service, for origination), role and result.");
        PeerConnections = _meter.CreateCounter<long>("proxy_tls_peer_connections", "{connection}", "TLS-terminated connections by listener, peer identity (bounded) and transport (mtls, tls).");
        HttpRetries = _meter.CreateCounter<long>("proxy_http_retries", "{retry}", "HTTP requests tried again by their retry policy, by listener, service and reason (connect-failure, refused-stream, reset, or the status).");
        HttpFaultsInjected = _meter.CreateCounter<long>("proxy_http_faults_injected", "{fault}", "Faults a route's fault injection put into HTTP requests, by listener, route and kind (delay, abort).");
        HttpRetryBudgetExhausted = _meter.CreateCounter<long>("proxy_http_retry_budget_exhausted", "{retry}", "Retries a retry policy allowed but the service's retry budget refused, by listener and service.");
        MeshInbound = _meter.CreateCounter<long>("proxy_mesh_inbound_connections", "{connection}", "Connections on mesh-aware inbound ports by listener, the port's mesh mode and what arrived (mtls, plaintext, tls, refused).");
        CircuitBreakerOverflows = _meter.CreateCounter<long>("proxy_circuit_breaker_overflow", "{request}", "Requests (or connections) refused because a service was at a circuit breaker limit, by service and limit.");
        CircuitBreakerConnectionWaits = _meter.CreateCounter<long>("proxy_circuit_breaker_connection_waits", "{request}", "Requests that waited for an upstream connection because a service had maxConnections open, by service.");
        CircuitBreakerOpen = _meter.CreateObservableGauge("proxy_circuit_breaker_current", ObserveCircuitBreakers, "{item}", "What a service's circuit breakers count now, by service and limit (connections open, requests pending, in flight, retrying).");
        Http2KeepaliveTimeouts = _meter.CreateCounter<long>("proxy_http2_keepalive_timeouts", "{connection}", "Upstream HTTP/2 connections closed because a keepalive PING got no answer in time, by service.");
        HttpRateLimited = _meter.CreateCounter<long>("proxy_http_rate_limited", "{request}", "HTTP requests refused with 429 by a local rate limit, by listener, service and route.");
    }

    /// <summary>
    /// Bucket upper bounds (seconds) of the HTTP duration histograms: 0.5 ms to 10 s, about 2.5x apart, fine enough
    /// below a millisecond for a proxy hop on loopback and wide enough for slow upstreams.
    /// </summary>
    public static IReadOnlyList<double> HttpDurationBuckets { get; } = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public Counter<long> ConnectionsOpened { get; }
    public UpDownCounter<long> ConnectionsActive { get; }
    public Counter<long> BytesToUpstream { get; }
    public Counter<long> BytesToDownstream { get; }

    /// <summary>Tag "cause": refused, timeout, unreachable, no_endpoint, no_original_destination, error.</summary>
    public Counter<long> ConnectFailures { get; }

    /// <summary>Tag "limit": max_connections.</summary>
    public Counter<long> ConnectionsRejected { get; }

    /// <summary>Tags "listener" and "protocol": http1, h2, tls, opaque, timeout. Exported as <c>proxy_detect_total</c>.</summary>
    public Counter<long> DetectTotal { get; }

    /// <summary>Upstream connections the pools opened (untagged: an endpoint tag would be unbounded).</summary>
    public Counter<long> PoolConnectionsCreated { get; }

    /// <summary>Rents that reused an idle pooled connection.</summary>
    public Counter<long> PoolConnectionsReused { get; }

    /// <summary>Idle pooled connections now.</summary>
    public UpDownCounter<long> PoolConnectionsIdle { get; }

    /// <summary>Tag "cause": closed_by_upstream, idle_timeout, not_reusable, overflow.</summary>
    public Counter<long> PoolConnectionsDiscarded { get; }
    /// <summary>
    /// Tags "listener", "service", "route", "status_class" (1xx..5xx, or "none" when no response was sent) and
    /// "error" (a ProxyErrors code, or "" for none). Exported as <c>proxy_http_requests_total</c>.
    /// </summary>
    public Counter<long> HttpRequests { get; }

    /// <summary>Seconds; tags "listener", "service", "route", "status_class". Buckets <see cref="HttpDurationBuckets"/>.</summary>
    public Histogram<double> HttpRequestDuration { get; }

    /// <summary>Seconds; tag "service". Recorded only when an upstream response head was read.</summary>
    public Histogram<double> HttpUpstreamDuration { get; }

    /// <summary>Tags "listener", "service".</summary>
    public UpDownCounter<long> HttpRequestsInFlight { get; }

    /// <summary>Bytes; tags "listener", "service". Exported as <c>proxy_http_request_body_bytes_total</c>.</summary>
    public Counter<long> HttpRequestBodyBytes { get; }

    /// <summary>Bytes; tags "listener", "service". Exported as <c>proxy_http_response_body_bytes_total</c>.</summary>
    public Counter<long> HttpResponseBodyBytes { get; }

    /// <summary>No tags. Exported as <c>proxy_access_log_dropped_total</c>.</summary>
    public Counter<long> AccessLogDropped { get; }

    /// <summary>
    /// Tags "listener", "decision" (allow, deny) and "policy" (a configured policy name, <c>no_allow_match</c> or
    /// <c>none</c>: bounded by the config). Exported as <c>proxy_authz_decisions_total</c>.
    /// </summary>
    public Counter<long> AuthzDecisions { get; }

    /// <summary>
    /// Process-wide managed allocation, observed when exported; the e2e bench reads it before and after a load run
    /// to report bytes allocated per forwarded request.
    /// </summary>
    public ObservableCounter<long> ProcessAllocatedBytes { get; }

    // ---- TLS certificates (mesh identity: certificate files reloaded on change; Proxy.Tls FileCertificateSource) ----

    private readonly ConcurrentDictionary<object, (string Name, Func<double> SecondsLeft)> _certificateExpiries = new();

    /// <summary>Tags "name" (the certificate's configured name) and "result": success, failure. Exported as <c>proxy_tls_certificate_reloads_total</c>.</summary>
    public Counter<long> CertificateReloads { get; }

    /// <summary>Tag "name"; one series per tracked certificate (<see cref="TrackCertificateExpiry"/>), observed when exported.</summary>
    public ObservableGauge<double> CertificateExpirySeconds { get; }

    /// <summary>
    /// Reports a certificate in <c>proxy_tls_certificate_expiry_seconds{name}</c> until the returned handle is disposed.
    /// <paramref name="secondsLeft"/> is called on each export (keep it cheap and thread-safe). After disposal the
    /// PrometheusExporter keeps showing the series' last value (it never forgets a series); names are per configured
    /// certificate, so that is one stale line per removed certificate at most.
    /// </summary>
    public IDisposable TrackCertificateExpiry(string name, Func<double> secondsLeft)
    {
        var token = new CertificateExpiryRegistration(_certificateExpiries);
        _certificateExpiries[token] = (name, secondsLeft);
        return token;
    }

    private IEnumerable<Measurement<double>> ObserveCertificateExpiries()
    {
        foreach (var (_, (name, secondsLeft)) in _certificateExpiries)
        {
            yield return new Measurement<double>(secondsLeft(), new KeyValuePair<string, object?>("name", name));
        }
    }

    private sealed class CertificateExpiryRegistration(ConcurrentDictionary<object, (string Name, Func<double> SecondsLeft)> owner) : IDisposable
    {
        public void Dispose() => owner.TryRemove(this, out _);
    }

    // ---- end of TLS certificates ----

    // --- TLS termination and origination (Proxy.Tls) ---

    /// <summary>
    /// Tags "listener" (termination: the listener's name; origination: ""), "service" (origination: the upstream service;
    /// termination: ""), "role" (server: termination, client: origination) and "result" (ok, timeout, failed, closed, no_certificate,
    /// client_certificate_missing, client_certificate_rejected, untrusted, name_mismatch). Exported as
    /// <c>proxy_tls_handshakes_total</c>.
    /// </summary>
    public Counter<long> TlsHandshakes { get; }

    /// <summary>
    /// Tags "listener", "peer" (the verified SPIFFE ID; "" without one; "other" past <see cref="MaxPeerLabels"/> distinct
    /// identities, so a mesh with many workloads cannot grow the series without bound) and "transport" (mtls, tls).
    /// Exported as <c>proxy_tls_peer_connections_total</c>.
    /// </summary>
    public Counter<long> PeerConnections { get; }

    /// <summary>
    /// Tags "listener", "mode" (strict, permissive: the mesh mode of the port dialled) and "result": mtls (mesh mTLS from
    /// a peer sidecar, terminated; its handshake outcome is in <see cref="TlsHandshakes"/>), plaintext or tls (the app's own
    /// TLS) accepted in permissive mode, refused (strict mode, not mesh mTLS).
    /// </summary>
    public Counter<long> MeshInbound { get; }

    /// <summary>Tags "listener", "service", "reason". Exported as <c>proxy_http_retries_total</c>.</summary>
    public Counter<long> HttpRetries { get; }

    /// <summary>Tags "service" (of the endpoint; "" when none). Exported as <c>proxy_http2_keepalive_timeouts_total</c>.</summary>
    public Counter<long> Http2KeepaliveTimeouts { get; }

    /// <summary>Tags "listener", "route", "kind" (delay, abort). Exported as <c>proxy_http_faults_injected_total</c>.</summary>
    public Counter<long> HttpFaultsInjected { get; }

    /// <summary>Tags "listener", "service". Exported as <c>proxy_http_retry_budget_exhausted_total</c>.</summary>
    public Counter<long> HttpRetryBudgetExhausted { get; }

    /// <summary>Distinct peer identities given their own "peer" label value; later ones count as "other".</summary>
    public const int MaxPeerLabels = 256;

    private readonly ConcurrentDictionary<string, string> _peerLabels = new(StringComparer.Ordinal);

    /// <summary>The "peer" label value for <paramref name="identity"/>: itself while fewer than <see cref="MaxPeerLabels"/> are known, else "other".</summary>
    public string PeerLabel(string? identity)
    {
        if (identity is null)
        {
            return "";
        }

        if (_peerLabels.TryGetValue(identity, out var label))
        {
            return label;
        }

        return _peerLabels.Count >= MaxPeerLabels ? "other" : _peerLabels.GetOrAdd(identity, identity);
    }

    public static TagList Tags(string listener, string service) => new() { { "listener", listener }, { "service", service } };

    public void Dispose() => _meter.Dispose();
}

namespace Proxy.Http.Forwarding;

/// <summary>
/// The machine-readable reasons of proxy-made responses and failed exchanges: the value of the
/// <see cref="HeaderName"/> response header, the access log's <c>error</c> field and the metrics' <c>error</c> tag.
/// A closed set, so metric cardinality stays bounded.
/// </summary>
public static class ProxyErrors
{
    /// <summary>Response header carrying the reason on every proxy-made response.</summary>
    public const string HeaderName = "x-proxy-error";

    /// <summary>400 (or 414/431/501): the request could not be parsed or breaks a rule of RFC 9112.</summary>
    public const string BadRequest = "bad_request";

    /// <summary>404: no route matched.</summary>
    public const string NoRoute = "no_route";

    /// <summary>503: the route's service (or subset) is unknown or has no endpoints.</summary>
    public const string NoEndpoint = "no_endpoint";

    /// <summary>502: the endpoint refused the connection.</summary>
    public const string UpstreamRefused = "upstream_refused";

    /// <summary>504: connecting to the endpoint timed out.</summary>
    public const string UpstreamConnectTimeout = "upstream_connect_timeout";

    /// <summary>502: the endpoint is unreachable, or connecting failed otherwise.</summary>
    public const string UpstreamConnectError = "upstream_connect_error";

    /// <summary>503: the endpoint's pool is at its connection limit.</summary>
    public const string PoolExhausted = "pool_exhausted";

    /// <summary>
    /// 502: the endpoint does not speak the upstream protocol asked for (no HTTP/2 SETTINGS to an h2c preface; connect
    /// failure cause <c>protocol_error</c>); 501 from the HTTP/2 upstream pool for a request HTTP/2 cannot carry (CONNECT, Upgrade).
    /// </summary>
    public const string UpstreamProtocol = "upstream_protocol";

    /// <summary>502: the TLS handshake with the endpoint failed (TLS origination: untrusted certificate, name mismatch, timeout).</summary>
    public const string UpstreamTls = "upstream_tls";

    /// <summary>502: the upstream reset the connection before its response was complete.</summary>
    public const string UpstreamReset = "upstream_reset";

    /// <summary>502: the upstream closed the connection before its response was complete.</summary>
    public const string UpstreamClosed = "upstream_closed";

    /// <summary>502: the upstream's response could not be parsed or breaks a rule of RFC 9112.</summary>
    public const string UpstreamBadResponse = "upstream_bad_response";

    /// <summary>504: no response head from the upstream within the response timeout.</summary>
    public const string ResponseTimeout = "response_timeout";

    /// <summary>504 (gRPC DEADLINE_EXCEEDED): no response head before the call's <c>grpc-timeout</c> expired.</summary>
    public const string DeadlineExceeded = "deadline_exceeded";

    /// <summary>504 (gRPC DEADLINE_EXCEEDED): the request timeout (route <c>timeouts.request</c>, <c>--http-request-timeout</c>) expired before the response head; after it, the reason of a reset.</summary>
    public const string RequestTimeout = "request_timeout";

    /// <summary>504 (gRPC DEADLINE_EXCEEDED): no response head within the route's per-try timeout (<c>timeouts.perTry</c>).</summary>
    public const string PerTryTimeout = "per_try_timeout";

    /// <summary>504 (gRPC DEADLINE_EXCEEDED): no byte either way for the stream idle timeout before the response head; after it, the reason of a reset.</summary>
    public const string IdleTimeout = "idle_timeout";

    /// <summary>408: the client did not send a whole request head within the header timeout (<c>--http-header-timeout</c>).</summary>
    public const string HeaderTimeout = "header_timeout";

    /// <summary>The route's fault injection aborted the request (its configured status, or the one its request asked for).</summary>
    public const string FaultAbort = "fault_abort";

    /// <summary>403 (gRPC PERMISSION_DENIED): an authorization policy denied the request (the body names it).</summary>
    public const string PolicyDenied = "policy_denied";

    /// <summary>401 (gRPC UNAUTHENTICATED): a JWT is required and the request has none.</summary>
    public const string JwtMissing = "jwt_missing";

    /// <summary>401 (gRPC UNAUTHENTICATED): the request's JWT failed validation (the body says why).</summary>
    public const string JwtInvalid = "jwt_invalid";

    /// <summary>
    /// 503 (gRPC UNAVAILABLE): the service is at a circuit breaker limit (the body and the access log's <c>limit</c> name
    /// it: maxConnections, maxPendingRequests, maxRequests); the request was not sent upstream.
    /// </summary>
    public const string Overflow = "overflow";

    /// <summary>429 (gRPC RESOURCE_EXHAUSTED) with <c>retry-after</c>: a local rate limit of the route or service refused the request.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>The client went away (closed or reset) before the exchange finished; nothing is sent.</summary>
    public const string ClientClosed = "client_closed";
}

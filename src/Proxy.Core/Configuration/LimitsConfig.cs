namespace Proxy.Core.Configuration;

/// <summary>
/// A service's circuit breakers; config key <c>circuitBreakers</c> (Envoy's circuit_breakers). Shared by the service's
/// subsets and every listener. A request over a limit gets a proxy-made 503 (gRPC UNAVAILABLE) with
/// <c>x-proxy-error: overflow</c> naming the limit, and no upstream attempt. A service without the key has no limits;
/// a key left out of the object takes Envoy's default.
/// </summary>
public sealed record CircuitBreakersConfig
{
    public const int DefaultMaxConnections = 1024;
    public const int DefaultMaxPendingRequests = 1024;
    public const int DefaultMaxRequests = 1024;
    public const int DefaultMaxRetries = 3;

    /// <summary>Key <c>maxConnections</c>: upstream connections to the service's endpoints open at once (every pool, opaque TCP too).</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>Key <c>maxPendingRequests</c>: requests waiting for an upstream connection or HTTP/2 stream at once.</summary>
    public int MaxPendingRequests { get; init; } = DefaultMaxPendingRequests;

    /// <summary>Key <c>maxRequests</c>: HTTP requests to the service in flight at once.</summary>
    public int MaxRequests { get; init; } = DefaultMaxRequests;

    /// <summary>Key <c>maxRetries</c>: requests being retried at once (a request holds one slot from its first retry to its end).</summary>
    public int MaxRetries { get; init; } = DefaultMaxRetries;
}

/// <summary>What a rate limit's buckets are kept by (config key <c>by</c>).</summary>
public enum RateLimitKey
{
    /// <summary>One bucket for everything the route (or service) serves: <c>by: "route"</c>.</summary>
    Route,

    /// <summary>
    /// One bucket per source: the verified SPIFFE ID of an mTLS client, else the client's IP address: <c>by: "source"</c>.
    /// </summary>
    Source,
}

/// <summary>
/// A local rate limit, config key <c>rateLimit</c> on a route or a service: a token bucket holding up to
/// <see cref="Burst"/> tokens, refilled continuously at <see cref="Requests"/> per <see cref="Per"/>; each request
/// takes one. Without a token: a proxy-made 429 (gRPC RESOURCE_EXHAUSTED), <c>x-proxy-error: rate_limited</c> and
/// <c>retry-after</c>.
/// </summary>
public sealed record RateLimitConfig
{
    /// <summary>Sources with their own bucket at once (<see cref="RateLimitKey.Source"/>); more share one bucket.</summary>
    public const int MaxSources = 10_000;

    /// <summary>Key <c>requests</c>: tokens added per <see cref="Per"/>.</summary>
    public required int Requests { get; init; }

    /// <summary>Key <c>per</c>: the period of <see cref="Requests"/> (default 1s).</summary>
    public TimeSpan Per { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Key <c>burst</c>: the bucket's size, requests allowed at once after a quiet spell (default: <see cref="Requests"/>).</summary>
    public required int Burst { get; init; }

    /// <summary>Key <c>by</c>: one bucket for all (<c>route</c>, the default) or one per source (<c>source</c>).</summary>
    public RateLimitKey By { get; init; } = RateLimitKey.Route;

    /// <summary>E.g. "100 requests per 1s (burst 100) per source".</summary>
    public string Describe() =>
        $"{Requests} request{(Requests == 1 ? "" : "s")} per {ValueParsers.FormatDuration(Per)} (burst {Burst}){(By == RateLimitKey.Source ? " per source" : "")}";
}

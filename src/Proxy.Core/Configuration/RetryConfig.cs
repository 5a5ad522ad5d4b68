namespace Proxy.Core.Configuration;

/// <summary>
/// What may be retried (Envoy's retry_on and retry_grpc_on names). The gRPC conditions match a trailers-only response
/// (the usual shape of a failed call) whose <c>grpc-status</c> is the named code.
/// </summary>
[Flags]
public enum RetryOn
{
    None = 0,

    /// <summary>The connect failed (refused, timed out, unreachable, TLS handshake failed): nothing reached the upstream.</summary>
    ConnectFailure = 1 << 0,

    /// <summary>An HTTP/2 upstream refused the stream unprocessed (REFUSED_STREAM, or past the GOAWAY's last stream).</summary>
    RefusedStream = 1 << 1,

    /// <summary>The upstream reset or closed the connection before any response byte.</summary>
    Reset = 1 << 2,

    /// <summary>Any 5xx response (including 502, 503, 504 the upstream sent).</summary>
    Status5xx = 1 << 3,

    /// <summary>502, 503 or 504 responses.</summary>
    GatewayError = 1 << 4,

    /// <summary>The status codes listed in <see cref="RetryPolicyConfig.StatusCodes"/>.</summary>
    RetriableStatusCodes = 1 << 5,

    /// <summary>gRPC status 1 CANCELLED.</summary>
    GrpcCancelled = 1 << 6,

    /// <summary>gRPC status 4 DEADLINE_EXCEEDED.</summary>
    GrpcDeadlineExceeded = 1 << 7,

    /// <summary>gRPC status 8 RESOURCE_EXHAUSTED.</summary>
    GrpcResourceExhausted = 1 << 8,

    /// <summary>gRPC status 13 INTERNAL.</summary>
    GrpcInternal = 1 << 9,

    /// <summary>gRPC status 14 UNAVAILABLE.</summary>
    GrpcUnavailable = 1 << 10,

    /// <summary>Every gRPC condition.</summary>
    AnyGrpc = GrpcCancelled | GrpcDeadlineExceeded | GrpcResourceExhausted | GrpcInternal | GrpcUnavailable,
}

/// <summary>
/// A route's (or a service's default) retry policy; config key <c>retries</c>. A retry goes to another endpoint when
/// the service has one, after an exponential backoff with full jitter, and only while the service's retry budget
/// allows. A request body is streamed to the upstream and kept (up to <see cref="MaxBodyBytes"/>) so it can be sent again;
/// a longer body makes its request not retriable once the body has started to flow.
/// </summary>
public sealed record RetryPolicyConfig
{
    /// <summary>Key <c>maxRetries</c>: retries after the first try (1-10).</summary>
    public int MaxRetries { get; init; } = 2;

    /// <summary>Key <c>on</c>: the conditions, by their names (<see cref="RetryPolicyNames"/>).</summary>
    public RetryOn On { get; init; } = RetryOn.ConnectFailure | RetryOn.RefusedStream | RetryOn.Reset | RetryOn.GatewayError;

    /// <summary>Key <c>statusCodes</c>: the codes of <c>retriable-status-codes</c>.</summary>
    public IReadOnlyList<int> StatusCodes { get; init; } = [];

    /// <summary>Key <c>backoff</c>: the first retry waits up to this (full jitter), each next one up to twice as long.</summary>
    public TimeSpan Backoff { get; init; } = TimeSpan.FromMilliseconds(25);

    /// <summary>Key <c>maxBackoff</c>: the longest wait between tries.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Key <c>nonIdempotent</c>: also retry methods that are not idempotent (POST, PATCH) after a reset or a retriable
    /// status, when the request may have been processed. Connect failures and refused streams are always safe.
    /// </summary>
    public bool NonIdempotent { get; init; }

    /// <summary>
    /// Key <c>maxBodyBytes</c>: the longest request body (as sent: chunk framing included) kept for replay on a retry
    /// (Linkerd keeps 64 KiB); 0: requests whose body has started to flow are never retried.
    /// </summary>
    public int MaxBodyBytes { get; init; } = DefaultMaxBodyBytes;

    public const int DefaultMaxBodyBytes = 64 * 1024;

    /// <summary>The largest <see cref="MaxBodyBytes"/> accepted (16 MiB).</summary>
    public const int MaxBodyBytesLimit = 16 * 1024 * 1024;
}

/// <summary>
/// A service's retry budget; config key <c>retryBudget</c>. Over the last 10 seconds, retries may be at most
/// <see cref="Ratio"/> of the requests plus <see cref="MinPerSecond"/> per second (Linkerd's budget), so a failing
/// dependency is not stormed.
/// </summary>
public sealed record RetryBudgetConfig
{
    /// <summary>Key <c>ratio</c>: retries per request, 0-1.</summary>
    public double Ratio { get; init; } = 0.2;

    /// <summary>Key <c>minPerSecond</c>: retries always allowed per second, whatever the traffic.</summary>
    public int MinPerSecond { get; init; } = 10;
}

/// <summary>The config spelling of the retry conditions.</summary>
public static class RetryPolicyNames
{
    public static readonly IReadOnlyList<(string Name, RetryOn Value)> All =
    [
        ("connect-failure", RetryOn.ConnectFailure),
        ("refused-stream", RetryOn.RefusedStream),
        ("reset", RetryOn.Reset),
        ("5xx", RetryOn.Status5xx),
        ("gateway-error", RetryOn.GatewayError),
        ("retriable-status-codes", RetryOn.RetriableStatusCodes),
        ("cancelled", RetryOn.GrpcCancelled),
        ("deadline-exceeded", RetryOn.GrpcDeadlineExceeded),
        ("resource-exhausted", RetryOn.GrpcResourceExhausted),
        ("internal", RetryOn.GrpcInternal),
        ("unavailable", RetryOn.GrpcUnavailable),
    ];

    public static bool TryParse(string name, out RetryOn value)
    {
        foreach (var (n, v) in All)
        {
            if (n == name)
            {
                value = v;
                return true;
            }
        }

        value = RetryOn.None;
        return false;
    }

    public static IEnumerable<string> Names(RetryOn on) => All.Where(p => (on & p.Value) != 0).Select(static p => p.Name);
}

namespace Proxy.Core.Configuration;

/// <summary>
/// A route's fault injection (Istio's HTTPFaultInjection); config key <c>fault</c>. Faults are decided per request,
/// before an endpoint is picked: first the delay, then the abort.
/// </summary>
public sealed record FaultConfig
{
    /// <summary>Key <c>delay</c>: hold a share of the requests this long before forwarding them.</summary>
    public FaultDelayConfig? Delay { get; init; }

    /// <summary>Key <c>abort</c>: answer a share of the requests with this status instead of forwarding them.</summary>
    public FaultAbortConfig? Abort { get; init; }

    /// <summary>
    /// Key <c>headerControl</c>: honour the request fields <c>x-proxy-fault-delay-ms</c>, <c>x-proxy-fault-abort</c>
    /// (an HTTP status) and <c>x-proxy-fault-abort-grpc</c> (a gRPC status), which inject that fault into that request
    /// (Envoy's header-controlled faults). Off by default: clients cannot inject faults unless the route lets them.
    /// </summary>
    public bool HeaderControl { get; init; }
}

/// <summary>Key <c>delay</c>: <c>{ "duration": "2s", "percentage": 10 }</c>.</summary>
/// <param name="Duration">Key <c>duration</c>: the fixed delay.</param>
/// <param name="Percentage">Key <c>percentage</c>: share of requests delayed, 0-100 (default 100).</param>
public sealed record FaultDelayConfig(TimeSpan Duration, double Percentage = 100);

/// <summary>
/// Key <c>abort</c>: <c>{ "httpStatus": 503, "grpcStatus": "UNAVAILABLE", "percentage": 5 }</c>. At least one status:
/// gRPC calls get <see cref="GrpcStatus"/> (or the gRPC mapping of <see cref="HttpStatus"/>), other requests
/// <see cref="HttpStatus"/> (or the HTTP mapping of <see cref="GrpcStatus"/>).
/// </summary>
public sealed record FaultAbortConfig
{
    /// <summary>Key <c>httpStatus</c>: 200-599.</summary>
    public int? HttpStatus { get; init; }

    /// <summary>Key <c>grpcStatus</c>: 1-16, as a number or a name (<c>UNAVAILABLE</c>).</summary>
    public int? GrpcStatus { get; init; }

    /// <summary>Key <c>percentage</c>: share of requests aborted, 0-100 (default 100).</summary>
    public double Percentage { get; init; } = 100;
}

/// <summary>The gRPC status codes by name (grpc/doc/statuscodes.md), for <c>grpcStatus</c>.</summary>
public static class GrpcStatusNames
{
    public static readonly IReadOnlyList<string> All =
    [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    ];

    /// <summary>The name of <paramref name="code"/> (0-16).</summary>
    public static string Name(int code) => (uint)code < (uint)All.Count ? All[code] : code.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

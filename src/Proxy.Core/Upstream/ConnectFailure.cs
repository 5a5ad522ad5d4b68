using Proxy.Core.Addresses;

namespace Proxy.Core.Upstream;

/// <summary>Why a connection to an upstream could not be made.</summary>
public enum ConnectFailureCause
{
    /// <summary>The destination answered with RST: nothing listens on that port.</summary>
    Refused,

    /// <summary>No answer within the connect timeout.</summary>
    Timeout,

    /// <summary>No route to the network or host.</summary>
    Unreachable,

    /// <summary>Any other failure (local resource error, a client connection middleware failed...).</summary>
    Error,

    /// <summary>The endpoint's pool is at its connection limit and none came free within the connect timeout.</summary>
    PoolExhausted,

    /// <summary>The endpoint answered, but not in the protocol asked for (e.g. no HTTP/2 SETTINGS to an h2c prior-knowledge preface).</summary>
    ProtocolError,

    /// <summary>TLS origination: the handshake with the endpoint failed (untrusted certificate, name mismatch, timeout...).</summary>
    Tls,

    /// <summary>The service is at its circuit breaker limit <c>maxConnections</c>: nothing was dialled (<see cref="ConnectFailure.Detail"/> says so).</summary>
    Overflow,
}

/// <summary>A failed upstream connect: where to, why, and the system's own words.</summary>
public readonly record struct ConnectFailure(UpstreamAddress Destination, ConnectFailureCause Cause, string Detail)
{
    /// <summary>The metrics tag value for <see cref="Cause"/> (<c>ProxyMetrics.ConnectFailures</c>, tag "cause").</summary>
    public string CauseTag => CauseToTag(Cause);

    /// <summary>What went wrong in words: "connection refused", "timed out", or for errors the system's message.</summary>
    public string Reason => Cause switch
    {
        ConnectFailureCause.Error => $"error ({Detail})",
        ConnectFailureCause.ProtocolError when !string.IsNullOrEmpty(Detail) => $"{Describe(Cause)} ({Detail})",
        ConnectFailureCause.Tls => $"{Describe(Cause)}: {Detail}",
        ConnectFailureCause.Overflow => Detail,
        _ => Describe(Cause),
    };

    /// <summary>E.g. "connect to 10.0.0.7:8080 failed: connection refused".</summary>
    public override string ToString() => $"connect to {Destination} failed: {Reason}";

    public static string CauseToTag(ConnectFailureCause cause) => cause switch
    {
        ConnectFailureCause.Refused => "refused",
        ConnectFailureCause.Timeout => "timeout",
        ConnectFailureCause.Unreachable => "unreachable",
        ConnectFailureCause.PoolExhausted => "pool_exhausted",
        ConnectFailureCause.ProtocolError => "protocol_error",
        ConnectFailureCause.Tls => "tls",
        ConnectFailureCause.Overflow => "overflow",
        _ => "error",
    };

    private static string Describe(ConnectFailureCause cause) => cause switch
    {
        ConnectFailureCause.Refused => "connection refused",
        ConnectFailureCause.Timeout => "no answer within the connect timeout",
        ConnectFailureCause.Unreachable => "destination unreachable",
        ConnectFailureCause.PoolExhausted => "the endpoint's connection pool is at its limit",
        ConnectFailureCause.ProtocolError => "the endpoint does not speak HTTP/2 (h2c prior knowledge)",
        ConnectFailureCause.Tls => "the TLS handshake failed",
        _ => "error",
    };
}

/// <summary>Thrown by <see cref="UpstreamConnector.ConnectAsync"/>; carries the typed <see cref="ConnectFailure"/>.</summary>
public sealed class UpstreamConnectException : IOException
{
    public UpstreamConnectException(ConnectFailure failure, Exception? inner = null)
        : base(failure.ToString(), inner)
    {
        Failure = failure;
    }

    public ConnectFailure Failure { get; }
}

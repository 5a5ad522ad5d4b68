namespace Proxy.Core.Detection;

/// <summary>How one capture listener detects protocols.</summary>
public sealed record ProtocolDetectorOptions
{
    /// <summary>
    /// Linkerd's default opaque ports: server-speaks-first protocols (SMTP 25/587, MySQL 3306, PostgreSQL 5432,
    /// Redis 6379, memcached 11211, Elasticsearch transport 9300) and 4444 (Galera). Connections to them skip
    /// detection and go straight to L4.
    /// </summary>
    public static IReadOnlyList<int> DefaultOpaquePorts { get; } = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

    /// <summary>
    /// How long to wait for the client's first bytes before treating the connection as opaque. Decision: 10 s,
    /// Linkerd's default. A short timeout (Istio's historic 100 ms) misclassifies a slow HTTP client as opaque,
    /// which later silently bypasses HTTP routing and authorization; the cost of a long one is borne only by
    /// server-speaks-first protocols on ports missing from <see cref="OpaquePorts"/>, which the operator can list.
    /// </summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Destination ports whose connections skip detection (0-65535).</summary>
    public IReadOnlyList<int> OpaquePorts { get; init; } = DefaultOpaquePorts;
}

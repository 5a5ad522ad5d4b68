using System.Diagnostics;
using Proxy.Core.Metrics;

namespace Proxy.Http.Authorization;

/// <summary>
/// The current <see cref="AuthorizationPolicies"/>, swapped atomically on reload: each request or connection reads
/// <see cref="Current"/> once and is evaluated against that one consistent set. Shared by every listener that applies
/// the policies; also counts decisions (<c>proxy_authz_decisions_total{listener, decision, policy}</c>).
/// </summary>
public sealed class AuthorizationState
{
    private volatile AuthorizationPolicies _current;
    private long _version;

    public AuthorizationState(AuthorizationPolicies policies, ProxyMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(policies);
        _current = policies;
        Metrics = metrics;
    }

    public AuthorizationPolicies Current => _current;

    public ProxyMetrics? Metrics { get; }

    /// <summary>How many times the policies were replaced.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>Raised after <see cref="Update"/> swapped the policies (tests wait on it; no polling).</summary>
    public event Action<AuthorizationPolicies>? Updated;

    public void Update(AuthorizationPolicies policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        _current = policies;
        Interlocked.Increment(ref _version);
        Updated?.Invoke(policies);
    }

    /// <summary>Counts one decision (no allocation: the tag list is a struct, the values are config strings).</summary>
    public void Record(string listener, in AuthorizationDecision decision)
    {
        if (Metrics is { } metrics)
        {
            var tags = new TagList { { "listener", listener }, { "decision", decision.Allowed ? "allow" : "deny" }, { "policy", decision.Policy } };
            metrics.AuthzDecisions.Add(1, in tags);
        }
    }
}

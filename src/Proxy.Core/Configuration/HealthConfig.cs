namespace Proxy.Core.Configuration;

/// <summary>
/// A service's outlier detection (Envoy's <c>outlier_detection</c>); config key <c>outlierDetection</c>. Endpoints whose
/// answers fail in a row, or whose success rate falls far below their peers', are ejected (get no traffic) for a time
/// that grows with each ejection, at most <see cref="MaxEjectionPercent"/> of the service at once.
/// </summary>
public sealed record OutlierDetectionConfig
{
    /// <summary>Key <c>consecutive5xx</c>: 5xx answers (and local-origin failures) in a row that eject; 0: off.</summary>
    public int Consecutive5xx { get; init; } = 5;

    /// <summary>Key <c>consecutiveGatewayFailure</c>: 502/503/504 answers (and local-origin failures) in a row that eject; 0: off.</summary>
    public int ConsecutiveGatewayFailure { get; init; }

    /// <summary>Key <c>consecutiveLocalOriginFailure</c>: connect failures, resets and timeouts in a row that eject; 0: off.</summary>
    public int ConsecutiveLocalOriginFailure { get; init; } = 5;

    /// <summary>Key <c>interval</c>: how often success rates are evaluated and ejections that are over end.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Key <c>baseEjectionTime</c>: an ejection lasts this times the endpoint's ejection count.</summary>
    public TimeSpan BaseEjectionTime { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Key <c>maxEjectionTime</c>: the longest an ejection lasts.</summary>
    public TimeSpan MaxEjectionTime { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>Key <c>maxEjectionPercent</c>: at most this share of the service's endpoints is ejected at once (one always may be).</summary>
    public int MaxEjectionPercent { get; init; } = 10;

    /// <summary>Key <c>successRateMinimumHosts</c>: success-rate ejection needs this many endpoints with enough requests; 0: off.</summary>
    public int SuccessRateMinimumHosts { get; init; } = 5;

    /// <summary>Key <c>successRateRequestVolume</c>: requests in an interval an endpoint needs to take part in the success-rate check.</summary>
    public int SuccessRateRequestVolume { get; init; } = 100;

    /// <summary>Key <c>successRateStdevFactor</c>: ejected when below mean - factor x standard deviation (Envoy's 1900 is 1.9 here).</summary>
    public double SuccessRateStdevFactor { get; init; } = 1.9;
}

/// <summary>The kind of an active health check.</summary>
public enum HealthCheckType
{
    /// <summary>A connect to the endpoint succeeds.</summary>
    Tcp,

    /// <summary>An HTTP/1.1 GET of <see cref="HealthCheckConfig.Path"/> answers an expected status.</summary>
    Http,
}

/// <summary>An inclusive range of HTTP status codes.</summary>
public readonly record struct StatusRange(int From, int To)
{
    public bool Contains(int status) => status >= From && status <= To;

    public override string ToString() => From == To ? From.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{From}-{To}";
}

/// <summary>
/// A service's active health check (Envoy's names); config key <c>healthCheck</c>. Every <see cref="Interval"/> each
/// current endpoint is checked over a connection of its own (not the pools); <see cref="UnhealthyThreshold"/> failures
/// in a row take it out of the balancers, <see cref="HealthyThreshold"/> successes in a row bring it back.
/// </summary>
public sealed record HealthCheckConfig
{
    /// <summary>Key <c>type</c>: <c>http</c> or <c>tcp</c>.</summary>
    public HealthCheckType Type { get; init; } = HealthCheckType.Http;

    /// <summary>Key <c>path</c>: the request target of HTTP checks.</summary>
    public string Path { get; init; } = "/";

    /// <summary>Key <c>host</c>: the Host header of HTTP checks; null: the service's name.</summary>
    public string? Host { get; init; }

    /// <summary>Key <c>expectedStatuses</c>: statuses that pass (numbers or "from-to" ranges); default 200-299.</summary>
    public IReadOnlyList<StatusRange> ExpectedStatuses { get; init; } = [new StatusRange(200, 299)];

    /// <summary>Key <c>interval</c>: time between two checks of an endpoint.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Key <c>timeout</c>: a check not done within this (connect and answer) fails.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Key <c>healthyThreshold</c>: successes in a row that bring an unhealthy endpoint back.</summary>
    public int HealthyThreshold { get; init; } = 2;

    /// <summary>Key <c>unhealthyThreshold</c>: failures in a row that take an endpoint out.</summary>
    public int UnhealthyThreshold { get; init; } = 3;

    public bool IsExpected(int status)
    {
        foreach (var range in ExpectedStatuses)
        {
            if (range.Contains(status))
            {
                return true;
            }
        }

        return false;
    }
}

namespace Proxy.Core.Balancing;

/// <summary>How one try against an endpoint ended, as outlier detection counts it (Envoy's result kinds).</summary>
public enum UpstreamResult : byte
{
    /// <summary>A response below 500.</summary>
    Success,

    /// <summary>A 5xx response other than 502, 503, 504.</summary>
    ServerError,

    /// <summary>A 502, 503 or 504 response, or a response the proxy could not read (it answers 502).</summary>
    GatewayError,

    /// <summary>Nothing came back: the connect failed, or the connection was reset or closed or timed out before a response.</summary>
    LocalOriginFailure,

    /// <summary>Opaque TCP: the connect succeeded (says nothing about responses: only clears the local-origin count).</summary>
    Connected,
}

/// <summary>An endpoint's last active health check verdict.</summary>
public enum HealthCheckStatus : byte
{
    /// <summary>Not checked (the service has no health check, or the first checks have not decided yet): usable.</summary>
    Unknown,

    Healthy,

    Unhealthy,
}

/// <summary>
/// Health and outlier state of an endpoint. It lives on the <see cref="Endpoint"/> object, so it is shared by the
/// service's balancer, its subsets' balancers, and the snapshots <see cref="EndpointSet.Update"/> builds when the
/// endpoints change (an unchanged address keeps its object, and with it its ejection and health check state).
/// </summary>
/// <remarks>
/// Balancers read only <see cref="IsAvailable"/> (one volatile read). Results are counted with interlocked operations
/// (allocation-free, lock-free); ejection and health transitions are written by <c>Proxy.Core.Health</c> under its
/// per-service lock.
/// </remarks>
public sealed partial class Endpoint
{
    private const int EjectedFlag = 1;
    private const int UnhealthyFlag = 2;

    // 0: usable. Bits: EjectedFlag (outlier detection), UnhealthyFlag (active health check).
    private int _unavailable;

    private int _consecutive5xx;
    private int _consecutiveGateway;
    private int _consecutiveLocal;
    private int _windowRequests;
    private int _windowSuccesses;
    private long _totalRequests;
    private long _totalFailures;

    // Outlier ejection (written under the service health lock).
    private long _ejectedUntil;
    private long _lastReturned;
    private int _timesEjected;
    private int _ejectionMultiplier;
    private string? _ejectionReason;
    private double _lastSuccessRate = double.NaN;

    // Active health check (written by the service's single check loop).
    private int _checkSuccesses;
    private int _checkFailures;
    private int _checkStatus;
    private string? _checkDetail;

    /// <summary>True when the endpoint may get traffic: not ejected by outlier detection and not failing its health check.</summary>
    public bool IsAvailable => Volatile.Read(ref _unavailable) == 0;

    /// <summary>Ejected by outlier detection now.</summary>
    public bool IsEjected => (Volatile.Read(ref _unavailable) & EjectedFlag) != 0;

    /// <summary>Marked unhealthy by the active health check now.</summary>
    public bool IsUnhealthy => (Volatile.Read(ref _unavailable) & UnhealthyFlag) != 0;

    /// <summary>Consecutive 5xx (including local-origin failures, as Envoy counts them) since the last success.</summary>
    public int Consecutive5xx => Volatile.Read(ref _consecutive5xx);

    /// <summary>Consecutive gateway errors (502, 503, 504, local-origin failures).</summary>
    public int ConsecutiveGatewayFailures => Volatile.Read(ref _consecutiveGateway);

    /// <summary>Consecutive local-origin failures (connect failed, reset, timed out).</summary>
    public int ConsecutiveLocalOriginFailures => Volatile.Read(ref _consecutiveLocal);

    /// <summary>Tries counted since the start (HTTP requests and their retries; TCP connect failures).</summary>
    public long TotalRequests => Volatile.Read(ref _totalRequests);

    /// <summary>Of <see cref="TotalRequests"/>, those that failed (5xx or local-origin).</summary>
    public long TotalFailures => Volatile.Read(ref _totalFailures);

    /// <summary>Tries in the current success-rate window (since the last outlier evaluation).</summary>
    public int WindowRequests => Volatile.Read(ref _windowRequests);

    /// <summary>Successes in the current success-rate window.</summary>
    public int WindowSuccesses => Volatile.Read(ref _windowSuccesses);

    /// <summary>The success rate (0-100) of the last evaluation interval with enough requests, NaN when none yet.</summary>
    public double LastSuccessRate => Volatile.Read(ref _lastSuccessRate);

    /// <summary>When the current ejection ends (a <see cref="TimeProvider"/> timestamp); meaningful while <see cref="IsEjected"/>.</summary>
    public long EjectedUntil => Volatile.Read(ref _ejectedUntil);

    /// <summary>Ejections since the start.</summary>
    public int TimesEjected => Volatile.Read(ref _timesEjected);

    /// <summary>The multiplier of the next ejection's base time (grows with each ejection, shrinks while the endpoint behaves).</summary>
    public int EjectionMultiplier => Volatile.Read(ref _ejectionMultiplier);

    /// <summary>Why the endpoint was last ejected (e.g. "consecutive-5xx"), or null.</summary>
    public string? EjectionReason => Volatile.Read(ref _ejectionReason);

    public HealthCheckStatus CheckStatus => (HealthCheckStatus)Volatile.Read(ref _checkStatus);

    /// <summary>What the last failed health check saw (e.g. "status 503", "connection refused"), or null.</summary>
    public string? CheckDetail => Volatile.Read(ref _checkDetail);

    /// <summary>
    /// Counts one result: updates the consecutive-failure counters and the success-rate window, allocation-free.
    /// Returns the counters after the update, for the outlier detector's thresholds.
    /// </summary>
    public ConsecutiveFailures RecordResult(UpstreamResult result)
    {
        switch (result)
        {
            case UpstreamResult.Success:
                Count(success: true);
                Clear(ref _consecutive5xx);
                Clear(ref _consecutiveGateway);
                Clear(ref _consecutiveLocal);
                return default;
            case UpstreamResult.ServerError:
                Count(success: false);
                Clear(ref _consecutiveGateway);
                Clear(ref _consecutiveLocal);
                return new(Interlocked.Increment(ref _consecutive5xx), 0, 0);
            case UpstreamResult.GatewayError:
                Count(success: false);
                Clear(ref _consecutiveLocal);
                return new(Interlocked.Increment(ref _consecutive5xx), Interlocked.Increment(ref _consecutiveGateway), 0);
            case UpstreamResult.LocalOriginFailure:
                Count(success: false);
                return new(Interlocked.Increment(ref _consecutive5xx), Interlocked.Increment(ref _consecutiveGateway), Interlocked.Increment(ref _consecutiveLocal));
            default:
                Clear(ref _consecutiveLocal);
                return new(Consecutive5xx, ConsecutiveGatewayFailures, 0);
        }
    }

    private void Count(bool success)
    {
        Interlocked.Increment(ref _totalRequests);
        Interlocked.Increment(ref _windowRequests);
        if (success)
        {
            Interlocked.Increment(ref _windowSuccesses);
        }
        else
        {
            Interlocked.Increment(ref _totalFailures);
        }
    }

    // Read first: a success on a healthy endpoint (the common case) writes nothing, so the cache line stays shared.
    private static void Clear(ref int counter)
    {
        if (Volatile.Read(ref counter) != 0)
        {
            Volatile.Write(ref counter, 0);
        }
    }

    /// <summary>Takes the success-rate window (requests, successes) and starts a new one.</summary>
    internal (int Requests, int Successes) TakeWindow()
    {
        var successes = Interlocked.Exchange(ref _windowSuccesses, 0);
        var requests = Interlocked.Exchange(ref _windowRequests, 0);
        return (requests, Math.Min(requests, successes));
    }

    internal void SetLastSuccessRate(double rate) => Volatile.Write(ref _lastSuccessRate, rate);

    /// <summary>Ejects until <paramref name="until"/>; the caller holds the service's health lock.</summary>
    internal void Eject(long until, string reason)
    {
        _ejectionMultiplier++;
        Volatile.Write(ref _ejectedUntil, until);
        Volatile.Write(ref _ejectionReason, reason);
        Interlocked.Increment(ref _timesEjected);
        Volatile.Write(ref _consecutive5xx, 0);
        Volatile.Write(ref _consecutiveGateway, 0);
        Volatile.Write(ref _consecutiveLocal, 0);
        SetFlag(EjectedFlag, true);
    }

    /// <summary>Ends the ejection at <paramref name="now"/>; the caller holds the service's health lock.</summary>
    internal void Return(long now)
    {
        Volatile.Write(ref _lastReturned, now);
        SetFlag(EjectedFlag, false);
    }

    /// <summary>When the last ejection ended (timestamp; 0: never).</summary>
    internal long LastReturned => Volatile.Read(ref _lastReturned);

    /// <summary>Lowers the ejection multiplier by one (the endpoint behaved for as long as its last ejection lasted).</summary>
    internal void DecrementMultiplier()
    {
        if (_ejectionMultiplier > 0)
        {
            Volatile.Write(ref _ejectionMultiplier, _ejectionMultiplier - 1);
        }
    }

    /// <summary>
    /// Counts one health check result with the thresholds; returns the status change it caused (null: none). Called by
    /// the service's single check loop only.
    /// </summary>
    internal HealthCheckStatus? RecordCheck(bool healthy, string? detail, int healthyThreshold, int unhealthyThreshold)
    {
        Volatile.Write(ref _checkDetail, healthy ? null : detail);
        var status = CheckStatus;
        if (healthy)
        {
            _checkFailures = 0;
            _checkSuccesses++;

            // An endpoint never checked before becomes healthy at its first success (Envoy's startup rule).
            if (status != HealthCheckStatus.Healthy && (status == HealthCheckStatus.Unknown || _checkSuccesses >= healthyThreshold))
            {
                SetCheckStatus(HealthCheckStatus.Healthy);
                return HealthCheckStatus.Healthy;
            }

            return null;
        }

        _checkSuccesses = 0;
        _checkFailures++;
        if (status != HealthCheckStatus.Unhealthy && _checkFailures >= unhealthyThreshold)
        {
            SetCheckStatus(HealthCheckStatus.Unhealthy);
            return HealthCheckStatus.Unhealthy;
        }

        return null;
    }

    private void SetCheckStatus(HealthCheckStatus status)
    {
        Volatile.Write(ref _checkStatus, (int)status);
        SetFlag(UnhealthyFlag, status == HealthCheckStatus.Unhealthy);
    }

    private void SetFlag(int flag, bool on)
    {
        int current;
        do
        {
            current = Volatile.Read(ref _unavailable);
        }
        while (Interlocked.CompareExchange(ref _unavailable, on ? current | flag : current & ~flag, current) != current);
    }
}

/// <summary>An endpoint's consecutive-failure counters right after a result was counted.</summary>
public readonly record struct ConsecutiveFailures(int Consecutive5xx, int ConsecutiveGateway, int ConsecutiveLocalOrigin);

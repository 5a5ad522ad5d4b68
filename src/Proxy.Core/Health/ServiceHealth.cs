using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;

namespace Proxy.Core.Health;

/// <summary>
/// Outlier detection and active health check state of one service (shared by its subsets), Envoy's model:
/// <list type="number">
/// <item>the HTTP stage (every try, HTTP/1.1 and HTTP/2 streams alike) and the opaque TCP stage (connects) report
///       results (<see cref="Report(Service?, Endpoint, UpstreamResult)"/>); counters live on the <see cref="Endpoint"/>;</item>
/// <item>a consecutive-failure threshold reached ejects the endpoint at once, unless <c>maxEjectionPercent</c> of the
///       service is ejected already (one endpoint always may be);</item>
/// <item>every <c>interval</c> (<see cref="Evaluate"/>): ejections that are over end, multipliers of endpoints that
///       behaved shrink, and success rates are compared (mean - factor x stdev among endpoints with enough requests);</item>
/// <item>the active health check loop (<see cref="HealthMonitor"/>) reports its verdicts (<see cref="OnCheckResult"/>).</item>
/// </list>
/// An ejection lasts <c>baseEjectionTime</c> x the endpoint's multiplier (one more per ejection), at most
/// <c>maxEjectionTime</c>; an ejected endpoint is back at the first evaluation after its time. The state is read from
/// the service's <em>current</em> endpoint set on every evaluation (endpoints change with discovery and reload).
/// Ejections and health transitions take <see cref="_lock"/>; reporting a result takes it only when a threshold is reached.
/// </summary>
public sealed partial class ServiceHealth
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private Service? _service;
    private HealthMetrics? _metrics;
    private ILogger _logger = NullLogger.Instance;
    private bool _panic;
    private long _panicPicks;

    public ServiceHealth(string serviceName, OutlierDetectionConfig? outlierDetection, HealthCheckConfig? healthCheck, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(serviceName);
        ServiceName = serviceName;
        OutlierDetection = outlierDetection;
        HealthCheck = healthCheck;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The state for a service's config, or null when it has neither outlier detection nor a health check.</summary>
    public static ServiceHealth? For(ServiceConfig config, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.OutlierDetection is null && config.HealthCheck is null ? null : new ServiceHealth(config.Name, config.OutlierDetection, config.HealthCheck, time);
    }

    public string ServiceName { get; }

    public OutlierDetectionConfig? OutlierDetection { get; }

    public HealthCheckConfig? HealthCheck { get; }

    public TimeProvider Time => _time;

    internal bool IsBound => _service is not null;

    /// <summary>The service's endpoints now (read from its balancer every time: the set changes with discovery and reload).</summary>
    public EndpointSet CurrentEndpoints => (_service ?? throw new InvalidOperationException("not bound to a service")).CurrentSet;

    /// <summary>True while no endpoint of the service is available (every pick is a panic pick).</summary>
    public bool InPanic => Volatile.Read(ref _panic);

    /// <summary>Picks made in panic mode since the start (this service and its subsets).</summary>
    public long PanicPicks => Interlocked.Read(ref _panicPicks);

    /// <summary>Binds to the (whole) service whose endpoints this state watches; once.</summary>
    public void Bind(Service service)
    {
        ArgumentNullException.ThrowIfNull(service);
        if (Interlocked.CompareExchange(ref _service, service, null) is not null)
        {
            throw new InvalidOperationException($"service health of {ServiceName} is bound already");
        }
    }

    /// <summary>Where ejections and transitions are counted and logged (the sidecar's; tests may leave them unset).</summary>
    public void Attach(HealthMetrics? metrics, ILogger? logger)
    {
        _metrics = metrics;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// Counts a try's result on <paramref name="endpoint"/> (always: /clusters shows the counters) and, when the
    /// service has outlier detection, ejects the endpoint if a threshold is reached. Allocation-free.
    /// </summary>
    public static void Report(Service? service, Endpoint endpoint, UpstreamResult result)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (service?.Health is { } health)
        {
            health.Report(endpoint, result);
        }
        else
        {
            endpoint.RecordResult(result);
        }
    }

    /// <summary>Opaque TCP: counts a connect's outcome (a failure is a local-origin failure; a success clears that count only).</summary>
    public static void ReportConnect(Service? service, Endpoint endpoint, Tcp.TcpConnectOutcome outcome)
    {
        if (outcome != Tcp.TcpConnectOutcome.Cancelled)
        {
            Report(service, endpoint, outcome == Tcp.TcpConnectOutcome.Connected ? UpstreamResult.Connected : UpstreamResult.LocalOriginFailure);
        }
    }

    public void Report(Endpoint endpoint, UpstreamResult result)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var counts = endpoint.RecordResult(result);
        if (OutlierDetection is not { } config || result is UpstreamResult.Success or UpstreamResult.Connected)
        {
            return;
        }

        // At the threshold and every multiple of it: once ejected the counters restart; when the max ejection percent
        // stopped it, the next try comes only after as many failures again (no lock per failure).
        if (Reached(counts.ConsecutiveLocalOrigin, config.ConsecutiveLocalOriginFailure))
        {
            TryEject(endpoint, Reasons.ConsecutiveLocalOrigin);
        }
        else if (Reached(counts.ConsecutiveGateway, config.ConsecutiveGatewayFailure))
        {
            TryEject(endpoint, Reasons.ConsecutiveGateway);
        }
        else if (Reached(counts.Consecutive5xx, config.Consecutive5xx))
        {
            TryEject(endpoint, Reasons.Consecutive5xx);
        }
    }

    private static bool Reached(int count, int threshold) => threshold > 0 && count >= threshold && count % threshold == 0;

    /// <summary>A pick found no available endpoint and fell back to all of them (panic mode).</summary>
    public void OnPanicPick()
    {
        Interlocked.Increment(ref _panicPicks);
        _metrics?.Panics.Add(1, new KeyValuePair<string, object?>("service", ServiceName));
    }

    /// <summary>The reasons an endpoint is ejected (metrics tag and /clusters).</summary>
    public static class Reasons
    {
        public const string Consecutive5xx = "consecutive-5xx";
        public const string ConsecutiveGateway = "consecutive-gateway-failure";
        public const string ConsecutiveLocalOrigin = "consecutive-local-origin-failure";
        public const string SuccessRate = "success-rate";
    }

    private bool TryEject(Endpoint endpoint, string reason)
    {
        var config = OutlierDetection!;
        lock (_lock)
        {
            if (endpoint.IsEjected || _service is null)
            {
                return false;
            }

            var set = CurrentEndpoints;
            var ejected = 0;
            var member = false;
            foreach (var e in set.AsSpan())
            {
                ejected += e.IsEjected ? 1 : 0;
                member |= ReferenceEquals(e, endpoint);
            }

            if (!member)
            {
                // Removed from the service meanwhile (discovery, reload): nothing to eject.
                return false;
            }

            // One endpoint may always be ejected; more only while (ejected + 1) stays within the percentage.
            if (ejected > 0 && (ejected + 1) * 100 > config.MaxEjectionPercent * set.Count)
            {
                _metrics?.EjectionsOverflow.Add(1, new("service", ServiceName), new("reason", reason));
                Log.EjectionOverflow(_logger, ServiceName, endpoint.Address, reason, ejected, set.Count, config.MaxEjectionPercent);
                return false;
            }

            var multiplier = endpoint.EjectionMultiplier + 1;
            var duration = TimeSpan.FromTicks(Math.Min(config.BaseEjectionTime.Ticks * multiplier, Math.Max(config.BaseEjectionTime.Ticks, config.MaxEjectionTime.Ticks)));
            var now = _time.GetTimestamp();
            endpoint.Eject(now + ToStamps(duration), reason);
            _metrics?.Ejections.Add(1, new("service", ServiceName), new("reason", reason));
            Log.Ejected(_logger, ServiceName, endpoint.Address, reason, duration.TotalSeconds, endpoint.TimesEjected);
            CheckPanicLocked();
            return true;
        }
    }

    /// <summary>
    /// The outlier detection interval: ends ejections that are over, lowers the multiplier of endpoints that have been
    /// back for as long as their last ejection lasted, and ejects success-rate outliers.
    /// </summary>
    public void Evaluate()
    {
        if (OutlierDetection is not { } config || _service is null)
        {
            return;
        }

        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var set = CurrentEndpoints;
            var changed = false;
            foreach (var e in set.AsSpan())
            {
                if (e.IsEjected)
                {
                    if (now >= e.EjectedUntil)
                    {
                        e.Return(now);
                        changed = true;
                        Log.Returned(_logger, ServiceName, e.Address, e.TimesEjected);
                    }
                }
                else if (e.EjectionMultiplier > 0 && now - e.LastReturned >= ToStamps(config.BaseEjectionTime * e.EjectionMultiplier))
                {
                    e.DecrementMultiplier();
                }
            }

            if (changed)
            {
                CheckPanicLocked();
            }
        }

        EvaluateSuccessRates(config);
    }

    private void EvaluateSuccessRates(OutlierDetectionConfig config)
    {
        var set = CurrentEndpoints;

        // Each endpoint's rate this interval, NaN when below the request volume; scratch on the stack for ordinary services.
        Span<double> rates = set.Count <= 128 ? stackalloc double[set.Count] : new double[set.Count];
        var n = 0;
        double sum = 0;
        for (var i = 0; i < set.Count; i++)
        {
            var e = set[i];
            var (requests, successes) = e.TakeWindow();
            rates[i] = double.NaN;
            if (requests == 0)
            {
                continue;
            }

            var rate = 100.0 * successes / requests;
            e.SetLastSuccessRate(rate);
            if (requests >= config.SuccessRateRequestVolume && !e.IsEjected)
            {
                rates[i] = rate;
                sum += rate;
                n++;
            }
        }

        if (config.SuccessRateMinimumHosts == 0 || n < config.SuccessRateMinimumHosts)
        {
            return;
        }

        var mean = sum / n;
        double variance = 0;
        foreach (var rate in rates)
        {
            if (!double.IsNaN(rate))
            {
                variance += (rate - mean) * (rate - mean);
            }
        }

        var threshold = mean - (config.SuccessRateStdevFactor * Math.Sqrt(variance / n));
        for (var i = 0; i < set.Count; i++)
        {
            if (rates[i] < threshold)
            {
                TryEject(set[i], Reasons.SuccessRate);
            }
        }
    }

    /// <summary>An active health check verdict for <paramref name="endpoint"/>.</summary>
    public void OnCheckResult(Endpoint endpoint, bool healthy, string? detail)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var config = HealthCheck!;
        _metrics?.HealthChecks.Add(1, new("service", ServiceName), new("result", healthy ? "healthy" : "unhealthy"));
        lock (_lock)
        {
            var change = endpoint.RecordCheck(healthy, detail, config.HealthyThreshold, config.UnhealthyThreshold);
            if (change == HealthCheckStatus.Unhealthy)
            {
                Log.Unhealthy(_logger, ServiceName, endpoint.Address, config.UnhealthyThreshold, detail ?? "");
                CheckPanicLocked();
            }
            else if (change == HealthCheckStatus.Healthy)
            {
                Log.Healthy(_logger, ServiceName, endpoint.Address);
                CheckPanicLocked();
            }
        }
    }

    private void CheckPanicLocked()
    {
        var any = Availability.Any(CurrentEndpoints.AsSpan());
        if (!any && !_panic)
        {
            Volatile.Write(ref _panic, true);
            Log.PanicStarted(_logger, ServiceName, CurrentEndpoints.Count);
        }
        else if (any && _panic)
        {
            Volatile.Write(ref _panic, false);
            Log.PanicEnded(_logger, ServiceName);
        }
    }

    private long ToStamps(TimeSpan duration) => (long)(duration.TotalSeconds * _time.TimestampFrequency);

    private static partial class Log
    {
        [LoggerMessage(EventId = 6501, Level = LogLevel.Warning, Message = "Service {Service}: endpoint {Endpoint} ejected ({Reason}) for {Seconds} s (ejection #{Times})")]
        public static partial void Ejected(ILogger logger, string service, Addresses.UpstreamAddress endpoint, string reason, double seconds, int times);

        [LoggerMessage(EventId = 6502, Level = LogLevel.Information, Message = "Service {Service}: endpoint {Endpoint} is back from its ejection (ejected {Times} time(s) so far)")]
        public static partial void Returned(ILogger logger, string service, Addresses.UpstreamAddress endpoint, int times);

        [LoggerMessage(EventId = 6503, Level = LogLevel.Warning, Message = "Service {Service}: endpoint {Endpoint} not ejected ({Reason}): {Ejected} of {Count} endpoints are ejected already, maxEjectionPercent is {Percent}")]
        public static partial void EjectionOverflow(ILogger logger, string service, Addresses.UpstreamAddress endpoint, string reason, int ejected, int count, int percent);

        [LoggerMessage(EventId = 6504, Level = LogLevel.Warning, Message = "Service {Service}: endpoint {Endpoint} is unhealthy after {Failures} failed health check(s) in a row: {Detail}")]
        public static partial void Unhealthy(ILogger logger, string service, Addresses.UpstreamAddress endpoint, int failures, string detail);

        [LoggerMessage(EventId = 6505, Level = LogLevel.Information, Message = "Service {Service}: endpoint {Endpoint} is healthy")]
        public static partial void Healthy(ILogger logger, string service, Addresses.UpstreamAddress endpoint);

        [LoggerMessage(EventId = 6506, Level = LogLevel.Warning, Message = "Service {Service}: all {Count} endpoints are ejected or unhealthy: balancing over all of them (panic mode)")]
        public static partial void PanicStarted(ILogger logger, string service, int count);

        [LoggerMessage(EventId = 6507, Level = LogLevel.Information, Message = "Service {Service}: an endpoint is available again: panic mode ended")]
        public static partial void PanicEnded(ILogger logger, string service);
    }
}

using Proxy.Core.Configuration;

namespace Proxy.Core.Limits;

/// <summary>The limits of a <see cref="CircuitBreaker"/>, as named in the config, the <c>overflow</c> responses and the metrics.</summary>
public enum CircuitBreakerLimit
{
    MaxConnections,
    MaxPendingRequests,
    MaxRequests,
    MaxRetries,
}

/// <summary>
/// A service's circuit breakers (Envoy's circuit_breakers): four counters of what is open or in flight to the service
/// now, each with its limit. One per service, shared by its subsets and by every listener. Each counter is one
/// <see cref="Interlocked"/> word: taking and giving back a slot allocates nothing and takes no lock.
/// </summary>
/// <remarks>
/// A slot is taken by incrementing and given back when the count went over the limit, so under a race the count may
/// pass the limit by the number of racing callers for an instant, but no caller past the limit is let through.
/// Every successful <c>TryEnter...</c> must be matched by exactly one <c>Exit...</c>.
/// </remarks>
public sealed partial class CircuitBreaker
{
    private int _connections;
    private int _pending;
    private int _requests;
    private int _retries;

    public CircuitBreaker(string service, CircuitBreakersConfig config)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentNullException.ThrowIfNull(config);
        Service = service;
        Config = config;
    }

    /// <summary>The service's name (the <c>service</c> metrics tag).</summary>
    public string Service { get; }

    public CircuitBreakersConfig Config { get; }

    /// <summary>Called once per refusal (metrics); set by the composer.</summary>
    public Action<CircuitBreaker, CircuitBreakerLimit>? OnOverflow { get; set; }

    public int Connections => Volatile.Read(ref _connections);

    public int PendingRequests => Volatile.Read(ref _pending);

    public int Requests => Volatile.Read(ref _requests);

    public int Retries => Volatile.Read(ref _retries);

    /// <summary>A new upstream connection to one of the service's endpoints; false (counted as an overflow) at <c>maxConnections</c>.</summary>
    public bool TryOpenConnection() => TryEnter(ref _connections, Config.MaxConnections, CircuitBreakerLimit.MaxConnections);

    /// <summary>A counted connection closed: its slot goes to the oldest request waiting for one (<see cref="EnqueueConnectionWaiter"/>), else is freed.</summary>
    public void ConnectionClosed()
    {
        Exit(ref _connections);

        // Read after the decrement (a full fence): a waiter queued before it is seen here, one queued after sees the free slot.
        if (Volatile.Read(ref _connectionWaiters) != 0)
        {
            GrantConnectionSlots();
        }
    }

    /// <summary>A request starts to wait for a connection or stream; false (counted) at <c>maxPendingRequests</c>.</summary>
    public bool TryEnterPending() => TryEnter(ref _pending, Config.MaxPendingRequests, CircuitBreakerLimit.MaxPendingRequests);

    /// <summary>A request starts to wait, admitted by an earlier <see cref="PendingFull"/>: counted without a check.</summary>
    public void EnterPending() => Interlocked.Increment(ref _pending);

    public void ExitPending() => Exit(ref _pending);

    /// <summary>True when <c>maxPendingRequests</c> requests wait now (a new one would be refused); counts the refusal.</summary>
    public bool PendingFull()
    {
        if (Volatile.Read(ref _pending) < Config.MaxPendingRequests)
        {
            return false;
        }

        OnOverflow?.Invoke(this, CircuitBreakerLimit.MaxPendingRequests);
        return true;
    }

    /// <summary>A request to the service starts; false (counted) at <c>maxRequests</c>.</summary>
    public bool TryEnterRequest() => TryEnter(ref _requests, Config.MaxRequests, CircuitBreakerLimit.MaxRequests);

    public void ExitRequest() => Exit(ref _requests);

    /// <summary>A request starts being retried; false (counted) at <c>maxRetries</c>.</summary>
    public bool TryEnterRetry() => TryEnter(ref _retries, Config.MaxRetries, CircuitBreakerLimit.MaxRetries);

    public void ExitRetry() => Exit(ref _retries);

    /// <summary>The limit's value.</summary>
    public int LimitOf(CircuitBreakerLimit limit) => limit switch
    {
        CircuitBreakerLimit.MaxConnections => Config.MaxConnections,
        CircuitBreakerLimit.MaxPendingRequests => Config.MaxPendingRequests,
        CircuitBreakerLimit.MaxRequests => Config.MaxRequests,
        _ => Config.MaxRetries,
    };

    /// <summary>The config name of <paramref name="limit"/> (the metrics' <c>limit</c> tag).</summary>
    public static string NameOf(CircuitBreakerLimit limit) => limit switch
    {
        CircuitBreakerLimit.MaxConnections => "maxConnections",
        CircuitBreakerLimit.MaxPendingRequests => "maxPendingRequests",
        CircuitBreakerLimit.MaxRequests => "maxRequests",
        _ => "maxRetries",
    };

    /// <summary>E.g. "service orders is at its circuit breaker limit maxRequests (100 requests in flight)".</summary>
    public string Describe(CircuitBreakerLimit limit)
    {
        var what = limit switch
        {
            CircuitBreakerLimit.MaxConnections => "upstream connections open",
            CircuitBreakerLimit.MaxPendingRequests => "requests waiting for a connection",
            CircuitBreakerLimit.MaxRequests => "requests in flight",
            _ => "requests being retried",
        };
        return $"service {Service} is at its circuit breaker limit {NameOf(limit)} ({LimitOf(limit)} {what})";
    }

    private bool TryEnter(ref int count, int limit, CircuitBreakerLimit which)
    {
        if (Interlocked.Increment(ref count) <= limit)
        {
            return true;
        }

        Interlocked.Decrement(ref count);
        OnOverflow?.Invoke(this, which);
        return false;
    }

    private static void Exit(ref int count) => Interlocked.Decrement(ref count);
}

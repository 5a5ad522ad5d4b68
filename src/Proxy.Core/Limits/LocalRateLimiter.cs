using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Proxy.Core.Configuration;

namespace Proxy.Core.Limits;

/// <summary>
/// A route's (or service's) local rate limit (<see cref="RateLimitConfig"/>): System.Threading.RateLimiting token
/// buckets of <see cref="RateLimitConfig.Burst"/> tokens, refilled continuously at <see cref="RateLimitConfig.Requests"/>
/// per <see cref="RateLimitConfig.Per"/> (no timer per bucket: the refill is computed on each acquire), one for all
/// requests or one per source.
/// </summary>
/// <remarks>
/// <para>Per source, buckets are kept in a dictionary by source key (the verified SPIFFE ID, else the client's IP
/// address). A bucket unused for as long as it takes to refill completely is as good as a new one, so a sweep
/// (every such interval, at least 1 s, on <see cref="TimeProvider"/>) drops those; at most
/// <see cref="RateLimitConfig.MaxSources"/> are kept, and sources past that share one extra bucket until the sweep
/// makes room.</para>
/// <para>An allowed request allocates nothing (the library's successful lease is a shared instance); a refused one
/// allocates its lease and the response.</para>
/// </remarks>
public sealed class LocalRateLimiter : IDisposable
{
    private static readonly object OverflowKey = new();

    private readonly TokenBucketRateLimiterOptions _options;
    private readonly TokenBucketRateLimiter? _single;
    private readonly ConcurrentDictionary<object, Bucket>? _sources;
    private readonly TimeProvider _time;
    private readonly long _idleStamps;
    private readonly int _maxSources;
    private readonly ITimer? _sweep;
    private readonly TimeSpan _tokenTime;
    private int _count;

    /// <param name="config">The limit.</param>
    /// <param name="time">The clock of the per-source sweep (the buckets' own refill reads the monotonic clock).</param>
    /// <param name="maxSources">Sources with their own bucket (tests make it small).</param>
    public LocalRateLimiter(RateLimitConfig config, TimeProvider? time = null, int maxSources = RateLimitConfig.MaxSources)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        _time = time ?? TimeProvider.System;
        _maxSources = maxSources;
        _tokenTime = TimeSpan.FromTicks(Math.Max(1, config.Per.Ticks / config.Requests));
        _options = new TokenBucketRateLimiterOptions
        {
            TokenLimit = config.Burst,
            TokensPerPeriod = config.Requests,
            ReplenishmentPeriod = config.Per,
            // Refilled by TryReplenish on each acquire, in proportion to the time since the last one.
            AutoReplenishment = false,
            QueueLimit = 0,
        };
        if (config.By == RateLimitKey.Route)
        {
            _single = new TokenBucketRateLimiter(_options);
            return;
        }

        _sources = new ConcurrentDictionary<object, Bucket>();
        var refill = TimeSpan.FromTicks((long)Math.Min(TimeSpan.FromDays(1).Ticks, config.Per.Ticks * ((double)config.Burst / config.Requests)));
        var idle = refill < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : refill;
        _idleStamps = (long)(idle.TotalSeconds * _time.TimestampFrequency);
        _sweep = _time.CreateTimer(static s => ((LocalRateLimiter)s!).Sweep(), this, idle, idle);
    }

    public RateLimitConfig Config { get; }

    /// <summary>Sources with their own bucket now.</summary>
    public int SourceCount => _sources?.Count ?? 0;

    /// <summary>
    /// Takes a token for a request from <paramref name="source"/> (ignored unless the limit is per source; null: the
    /// shared overflow bucket). False when there is none; <paramref name="retryAfter"/> then says when one will be.
    /// </summary>
    public bool TryAcquire(object? source, out TimeSpan retryAfter)
    {
        var limiter = _single ?? BucketFor(source);
        limiter.TryReplenish();
        using var lease = limiter.AttemptAcquire(1);
        if (lease.IsAcquired)
        {
            retryAfter = TimeSpan.Zero;
            return true;
        }

        // Refused: the bucket holds less than one token, and one takes at most this long to accrue. (The library's own
        // RetryAfter counts whole replenishment periods, too coarse for a continuously refilled bucket.)
        retryAfter = _tokenTime;
        return false;
    }

    /// <summary>The whole seconds a client should wait (<c>retry-after</c>), at least 1.</summary>
    public static int RetryAfterSeconds(TimeSpan retryAfter) => (int)Math.Clamp(Math.Ceiling(retryAfter.TotalSeconds), 1, int.MaxValue);

    private TokenBucketRateLimiter BucketFor(object? source)
    {
        var sources = _sources!;
        var key = source ?? OverflowKey;
        var now = _time.GetTimestamp();
        if (sources.TryGetValue(key, out var bucket))
        {
            bucket.LastUsed = now;
            return bucket.Limiter;
        }

        if (Volatile.Read(ref _count) >= _maxSources && !ReferenceEquals(key, OverflowKey))
        {
            return BucketFor(null);
        }

        var made = new Bucket(new TokenBucketRateLimiter(_options)) { LastUsed = now };
        bucket = sources.GetOrAdd(key, made);
        if (ReferenceEquals(bucket, made))
        {
            Interlocked.Increment(ref _count);
        }
        else
        {
            made.Limiter.Dispose();
        }

        return bucket.Limiter;
    }

    /// <summary>Drops the buckets unused for as long as a refill from empty takes (they are full again: nothing is lost).</summary>
    internal void Sweep()
    {
        var now = _time.GetTimestamp();
        foreach (var pair in _sources!)
        {
            // Not disposed: a request that looked the bucket up just before may still take its token from it (a bucket
            // without auto-replenishment holds no timer, so nothing leaks).
            if (now - Volatile.Read(ref pair.Value.LastUsed) >= _idleStamps && _sources.TryRemove(pair))
            {
                Interlocked.Decrement(ref _count);
            }
        }
    }

    public void Dispose()
    {
        _sweep?.Dispose();
        _single?.Dispose();
        if (_sources is not null)
        {
            foreach (var pair in _sources)
            {
                pair.Value.Limiter.Dispose();
            }
        }
    }

    private sealed class Bucket(TokenBucketRateLimiter limiter)
    {
        public readonly TokenBucketRateLimiter Limiter = limiter;

        public long LastUsed;
    }
}

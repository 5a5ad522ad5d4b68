using System.Net;
using Proxy.Core.Configuration;
using Proxy.Core.Limits;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Limits;

public sealed class LocalRateLimiterTests
{
    // An hour per token: nothing refills during a test, so the counts are exact.
    private static RateLimitConfig Slow(int burst, RateLimitKey by = RateLimitKey.Route) => new() { Requests = 1, Per = TimeSpan.FromHours(1), Burst = burst, By = by };

    [Fact]
    public void Route_BurstAllowedThenRefused_WithRetryAfter()
    {
        using var limiter = new LocalRateLimiter(Slow(3));
        for (var i = 0; i < 3; i++)
        {
            Assert.True(limiter.TryAcquire(null, out _));
        }

        Assert.False(limiter.TryAcquire(null, out var retryAfter));
        Assert.InRange(retryAfter, TimeSpan.FromMinutes(59), TimeSpan.FromHours(1));
        Assert.Equal(3600, LocalRateLimiter.RetryAfterSeconds(retryAfter));
        Assert.Equal(1, LocalRateLimiter.RetryAfterSeconds(TimeSpan.FromMilliseconds(5)));
    }

    [Fact]
    public void Source_EachSourceHasItsOwnBucket()
    {
        using var limiter = new LocalRateLimiter(Slow(2, RateLimitKey.Source));
        var a = IPAddress.Parse("10.0.0.1");
        var aAgain = IPAddress.Parse("10.0.0.1");
        const string b = "spiffe://cluster.local/ns/default/sa/web";
        Assert.True(limiter.TryAcquire(a, out _));
        Assert.True(limiter.TryAcquire(aAgain, out _));
        Assert.False(limiter.TryAcquire(a, out _));
        Assert.True(limiter.TryAcquire(b, out _));
        Assert.True(limiter.TryAcquire(b, out _));
        Assert.False(limiter.TryAcquire(b, out _));
        Assert.Equal(2, limiter.SourceCount);
    }

    [Fact]
    public void Source_PastTheCap_NewSourcesShareOneBucket()
    {
        using var limiter = new LocalRateLimiter(Slow(1, RateLimitKey.Source), maxSources: 2);
        Assert.True(limiter.TryAcquire("a", out _));
        Assert.True(limiter.TryAcquire("b", out _));
        Assert.True(limiter.TryAcquire("c", out _));
        Assert.False(limiter.TryAcquire("d", out _));
        Assert.Equal(3, limiter.SourceCount);
    }

    [Fact]
    public void Source_IdleBucketsAreDroppedOnceTheyWouldBeFull()
    {
        var time = new ManualTimeProvider();
        // 2 tokens at 1 per minute: a bucket unused for 2 minutes is full again.
        using var limiter = new LocalRateLimiter(new RateLimitConfig { Requests = 1, Per = TimeSpan.FromMinutes(1), Burst = 2, By = RateLimitKey.Source }, time);
        Assert.True(limiter.TryAcquire("a", out _));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(limiter.TryAcquire("b", out _));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, limiter.SourceCount);
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(0, limiter.SourceCount);
    }

    [Fact]
    public async Task Refill_ATokenComesBackAfterItsShareOfThePeriod()
    {
        using var limiter = new LocalRateLimiter(new RateLimitConfig { Requests = 20, Per = TimeSpan.FromSeconds(1), Burst = 1 });
        Assert.True(limiter.TryAcquire(null, out _));
        Assert.False(limiter.TryAcquire(null, out var retryAfter));
        Assert.InRange(retryAfter, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(50));

        // One token per 50 ms: within a few seconds at most (a loaded machine), one is there again.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!limiter.TryAcquire(null, out _))
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(10), "no token came back");
            await Task.Delay(10);
        }
    }

    [Fact]
    public void AllowedAcquire_AllocatesNothing()
    {
        using var limiter = new LocalRateLimiter(new RateLimitConfig { Requests = 1_000_000, Per = TimeSpan.FromSeconds(1), Burst = 1_000_000, By = RateLimitKey.Source });
        var source = IPAddress.Loopback;
        limiter.TryAcquire(source, out _);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(limiter.TryAcquire(source, out _));
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

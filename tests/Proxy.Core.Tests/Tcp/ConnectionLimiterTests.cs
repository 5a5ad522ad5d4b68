using Proxy.Core.Tcp;

namespace Proxy.Core.Tests.Tcp;

public sealed class ConnectionLimiterTests
{
    [Fact]
    public void TryAcquire_UpToMax_SucceedsThenFails()
    {
        var limiter = new ConnectionLimiter(2);

        Assert.True(limiter.TryAcquire());
        Assert.True(limiter.TryAcquire());
        Assert.False(limiter.TryAcquire());
        Assert.Equal(2, limiter.Current);
    }

    [Fact]
    public void Release_FreesASlot()
    {
        var limiter = new ConnectionLimiter(1);
        Assert.True(limiter.TryAcquire());

        limiter.Release();

        Assert.Equal(0, limiter.Current);
        Assert.True(limiter.TryAcquire());
    }

    [Fact]
    public void Release_WithoutAcquire_Throws()
    {
        var limiter = new ConnectionLimiter(1);

        Assert.Throws<InvalidOperationException>(limiter.Release);
        Assert.Equal(0, limiter.Current);
    }

    [Fact]
    public async Task TryAcquire_Concurrent_NeverExceedsMax()
    {
        var limiter = new ConnectionLimiter(100);
        var acquired = 0;
        var tasks = new Task[8];
        for (var t = 0; t < tasks.Length; t++)
        {
            tasks[t] = Task.Run(() =>
            {
                for (var i = 0; i < 1000; i++)
                {
                    if (limiter.TryAcquire())
                    {
                        Interlocked.Increment(ref acquired);
                    }
                }
            });
        }

        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(100, acquired);
        Assert.Equal(100, limiter.Current);
    }

    [Fact]
    public void Constructor_NonPositiveMax_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConnectionLimiter(0));
    }
}

using Proxy.Core.Addresses;
using Proxy.Core.Configuration;
using Proxy.Core.Limits;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

/// <summary>
/// The pending queue at a service's <c>maxConnections</c> (UpstreamPool.Breaker.cs): a rent that needs a new connection
/// waits for a returned connection or a freed slot, in arrival order, bounded by the wait timeout and its token.
/// </summary>
public sealed class UpstreamPoolBreakerTests
{
    private static CircuitBreaker Breaker(int connections = 1)
        => new("orders", new CircuitBreakersConfig { MaxConnections = connections });

    private static (UpstreamPool Pool, UpstreamConnector Inner) Pool(CircuitBreaker breaker, TimeProvider? time = null, TimeSpan? wait = null)
    {
        var inner = new UpstreamConnector();
        var pool = new UpstreamPool(
            new CircuitBreakingConnector(inner, _ => breaker),
            new UpstreamPoolOptions { TimeProvider = time ?? TimeProvider.System, WaitTimeout = wait ?? TestTimeouts.Short });
        return (pool, inner);
    }

    [Fact]
    public async Task RentAsync_AtMaxConnections_WaitsAndTakesTheReturnedConnection()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        Assert.Equal(1, breaker.ConnectionWaiters);
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 0, Waiting: 1), pool.GetStats(server.Address));

        pool.Return(a, reusable: true);
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.Same(a, result.Connection);
        Assert.True(a.IsReused);
        Assert.Equal("again", await PoolTest.ExchangeAsync(a, "again"));
        Assert.Equal(1, server.AcceptedCount);
        Assert.Equal(1, breaker.Connections);
        Assert.Equal(0, breaker.ConnectionWaiters);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(a, reusable: true);
    }

    [Fact]
    public async Task Return_NotReusable_TheWaiterConnectsWithTheFreedSlot()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        pool.Return(a, reusable: false);
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.True(result.IsSuccess, result.IsSuccess ? null : result.Failure.ToString());
        Assert.NotSame(a, result.Connection);
        Assert.False(result.Connection!.IsReused);
        Assert.Equal("new", await PoolTest.ExchangeAsync(result.Connection, "new"));
        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        Assert.Equal(1, breaker.Connections);
        pool.Return(result.Connection, reusable: true);
    }

    [Fact]
    public async Task RentAsync_SeveralWaiters_ServedInArrivalOrder()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);

        var first = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        var second = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        var third = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.Equal(3, breaker.ConnectionWaiters);

        pool.Return(a, reusable: true);
        Assert.Same(a, (await first.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.False(second.IsCompleted);
        Assert.False(third.IsCompleted);

        // Closed instead of returned: its slot goes to the next waiter, which connects.
        pool.Return(a, reusable: false);
        var b = (await second.WaitAsync(TestTimeouts.Short)).Connection!;
        Assert.NotSame(a, b);
        Assert.False(third.IsCompleted);

        pool.Return(b, reusable: true);
        Assert.Same(b, (await third.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.Equal(0, breaker.ConnectionWaiters);
        Assert.Equal(1, breaker.Connections);
        pool.Return(b, reusable: true);
    }

    [Fact]
    public async Task RentAsync_Cancelled_LeavesTheQueueAtOnce_TheNextWaiterIsServed()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);

        using var gone = new CancellationTokenSource();
        var cancelled = pool.RentAsync(server.Address, gone.Token).AsTask();
        var next = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.Equal(2, breaker.ConnectionWaiters);

        await gone.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TestTimeouts.Short));
        Assert.Equal(1, breaker.ConnectionWaiters);
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 0, Waiting: 1), pool.GetStats(server.Address));

        pool.Return(a, reusable: true);
        Assert.Same(a, (await next.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.Equal(0, breaker.ConnectionWaiters);
        pool.Return(a, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
        Assert.Equal(1, breaker.Connections);
        Assert.Equal(1, server.AcceptedCount);
    }

    [Fact]
    public async Task RentAsync_NothingFreeWithinTheWaitTimeout_OverflowNamingMaxConnectionsAndTheWait()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var overflows = new List<CircuitBreakerLimit>();
        breaker.OnOverflow = (_, limit) => overflows.Add(limit);
        var time = new ManualTimeProvider();
        var (pool, inner) = Pool(breaker, time, TimeSpan.FromSeconds(2));
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(waiting.IsCompleted);
        Assert.Empty(overflows);
        time.Advance(TimeSpan.FromSeconds(1));
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Overflow, result.Failure.Cause);
        Assert.Equal(
            "service orders is at its circuit breaker limit maxConnections (1 upstream connections open) and none came free while the request waited 2000 ms",
            result.Failure.Detail);
        Assert.Equal([CircuitBreakerLimit.MaxConnections], overflows);
        Assert.Equal(0, breaker.ConnectionWaiters);

        // The timed-out waiter is gone: the return goes idle instead of to it.
        pool.Return(a, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
        Assert.Equal(1, breaker.Connections);
    }

    [Fact]
    public async Task Return_WhileTheServiceWaitsOnAnotherEndpoint_ClosedSoTheWaiterConnects()
    {
        await using var one = PoolTestServer.Start();
        await using var two = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, one.Address);

        var waiting = pool.RentAsync(two.Address, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);

        // Kept idle, it would hold the service's only slot while a request for the other endpoint waits.
        pool.Return(a, reusable: true);
        var b = (await waiting.WaitAsync(TestTimeouts.Short)).Connection!;

        Assert.Equal(two.Address, b.Address);
        Assert.Equal("two", await PoolTest.ExchangeAsync(b, "two"));
        Assert.Equal(new UpstreamPoolStats(Open: 0, Idle: 0, Waiting: 0), pool.GetStats(one.Address));
        Assert.Equal(1, breaker.Connections);
        pool.Return(b, reusable: true);
    }

    [Fact]
    public async Task RentAsync_TheSlotsAreHeldByIdleConnectionsToAnotherEndpoint_OneIsClosedForTheWaiter()
    {
        await using var one = PoolTestServer.Start();
        await using var two = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var waits = 0;
        breaker.OnConnectionWait = _ => waits++;
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        pool.Return(await PoolTest.RentAsync(pool, one.Address), reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(one.Address));

        // Sequential requests to two endpoints with maxConnections 1: the idle one must not hold the slot until it expires.
        var b = await PoolTest.RentAsync(pool, two.Address);

        Assert.Equal("two", await PoolTest.ExchangeAsync(b, "two"));
        Assert.Equal(1, waits);
        Assert.Equal(new UpstreamPoolStats(Open: 0, Idle: 0, Waiting: 0), pool.GetStats(one.Address));
        Assert.Equal(1, breaker.Connections);
        pool.Return(b, reusable: true);
    }

    [Fact]
    public async Task Dispose_FailsWaitingRents_SlotsBack()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 1);
        var (pool, inner) = Pool(breaker);
        using var __ = inner;
        var a = await PoolTest.RentAsync(pool, server.Address);
        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();

        await pool.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TestTimeouts.Short));
        Assert.Equal(0, breaker.ConnectionWaiters);

        pool.Return(a, reusable: true);
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (breaker.Connections != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the returned connection was never closed");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task ConcurrentRents_TwoEndpoints_SomeCancelled_NoWaiterLost_NeverPastTheLimit_CountsAddUp()
    {
        const int Max = 3;
        const int Tasks = 8;
        const int RentsPerTask = 300;
        await using var one = PoolTestServer.Start();
        await using var two = PoolTestServer.Start();
        var breaker = Breaker(connections: Max);
        var overflows = 0;
        breaker.OnOverflow = (_, _) => Interlocked.Increment(ref overflows);
        var waits = 0;
        breaker.OnConnectionWait = _ => Interlocked.Increment(ref waits);
        var (pool, inner) = Pool(breaker, wait: TestTimeouts.Bulk);
        await using var _ = pool;
        using var __ = inner;
        var inUse = 0;
        var maxInUse = 0;
        var cancelled = 0;

        async Task WorkerAsync(int worker)
        {
            for (var i = 0; i < RentsPerTask; i++)
            {
                var address = (i + worker) % 3 == 0 ? two.Address : one.Address;

                // Every eleventh rent gives up at once if it has to wait (a client that went away).
                using var gone = new CancellationTokenSource();
                var renting = pool.RentAsync(address, gone.Token);
                if ((i + worker) % 11 == 0 && !renting.IsCompleted)
                {
                    await gone.CancelAsync();
                }

                PoolRentResult result;
                try
                {
                    result = await renting;
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref cancelled);
                    continue;
                }

                Assert.True(result.IsSuccess, result.IsSuccess ? null : result.Failure.ToString());
                var now = Interlocked.Increment(ref inUse);
                InterlockedMax(ref maxInUse, now);
                if (i % 7 == 0)
                {
                    var text = $"w{worker}-{i}";
                    Assert.Equal(text, await PoolTest.ExchangeAsync(result.Connection!, text));
                }
                else
                {
                    await Task.Yield();
                }

                Interlocked.Decrement(ref inUse);
                pool.Return(result.Connection!, reusable: (i + worker) % 5 != 0);
            }
        }

        await BurstAsync(pool, one.Address, Max * 3);
        var workers = new Task[Tasks];
        for (var w = 0; w < Tasks; w++)
        {
            var worker = w;
            workers[w] = Task.Run(() => WorkerAsync(worker));
        }

        await Task.WhenAll(workers).WaitAsync(TestTimeouts.Bulk);

        Assert.InRange(maxInUse, 1, Max);
        Assert.True(waits > 0, "no rent ever waited: the test did not exercise the queue");
        Assert.Equal(0, overflows);
        Assert.Equal(0, breaker.ConnectionWaiters);
        var open = pool.GetStats(one.Address).Open + pool.GetStats(two.Address).Open;
        Assert.Equal(0, pool.GetStats(one.Address).Waiting + pool.GetStats(two.Address).Waiting);
        Assert.Equal(open, pool.GetStats(one.Address).Idle + pool.GetStats(two.Address).Idle);

        // Every connection closed by the pool gave its slot back (the closes run in the background).
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (breaker.Connections != open)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{breaker.Connections} slots taken, {open} connections open");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task ConcurrentRents_OneEndpoint_AllReturnedReusable_SlotsMatchOpenConnections_NoneBeyondTheLimit()
    {
        const int Max = 4;
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: Max);
        var waits = 0;
        breaker.OnConnectionWait = _ => Interlocked.Increment(ref waits);
        var (pool, inner) = Pool(breaker, wait: TestTimeouts.Bulk);
        await using var _ = pool;
        using var __ = inner;

        async Task WorkerAsync(int worker)
        {
            for (var i = 0; i < 300; i++)
            {
                var result = await pool.RentAsync(server.Address, CancellationToken.None);
                Assert.True(result.IsSuccess, result.IsSuccess ? null : result.Failure.ToString());
                await Task.Yield();
                pool.Return(result.Connection!, reusable: true);
            }
        }

        await BurstAsync(pool, server.Address, Max * 3);
        await Task.WhenAll(Enumerable.Range(0, 12).Select(w => Task.Run(() => WorkerAsync(w)))).WaitAsync(TestTimeouts.Bulk);

        // Waiters of the one endpoint get the returned connections. Rarely (a return racing a waiter's enqueue, seen once
        // in a clean-clone CI run) a returned connection is closed to make room and the waiter is then served by another
        // return: that costs a connect, never a slot. So: the slots taken match the open connections once the
        // background closes end, and never more than the limit are open.
        Assert.True(waits > 0, "no rent ever waited: the test did not exercise the queue");
        Assert.InRange(pool.GetStats(server.Address).Open, 1, Max);
        Assert.Equal(0, breaker.ConnectionWaiters);
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (breaker.Connections != pool.GetStats(server.Address).Open)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{breaker.Connections} slots taken, {pool.GetStats(server.Address).Open} connections open");
            await Task.Delay(5);
        }
    }

    /// <summary>
    /// So the queue is exercised whatever the scheduling: <paramref name="count"/> rents at once, more than the service
    /// may have connections (those past the limit wait for a slot), each connection handed back as soon as its rent has it.
    /// </summary>
    private static async Task BurstAsync(UpstreamPool pool, Proxy.Core.Addresses.UpstreamAddress address, int count)
    {
        var burst = Enumerable.Range(0, count).Select(_ => pool.RentAsync(address, CancellationToken.None).AsTask()).ToList();
        while (burst.Count > 0)
        {
            var done = await Task.WhenAny(burst).WaitAsync(TestTimeouts.Bulk);
            burst.Remove(done);
            var rented = await done;
            Assert.True(rented.IsSuccess, rented.IsSuccess ? null : rented.Failure.ToString());
            pool.Return(rented.Connection!, reusable: true);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    [Fact]
    public async Task RentAndReturn_IdleConnectionOfACountedService_AllocatesNothing()
    {
        await using var server = PoolTestServer.Start();
        var breaker = Breaker(connections: 4);
        var (pool, inner) = Pool(breaker);
        await using var _ = pool;
        using var __ = inner;
        pool.Return(await PoolTest.RentAsync(pool, server.Address), reusable: true);
        var address = server.Address;

        // Warm up, then measure: the idle rent and the return read the breaker's waiter count, nothing else.
        RentReturn(pool, address);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            RentReturn(pool, address);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1, breaker.Connections);

        static void RentReturn(UpstreamPool pool, UpstreamAddress address)
        {
            var renting = pool.RentAsync(address, CancellationToken.None);
            Assert.True(renting.IsCompletedSuccessfully);
            pool.Return(renting.Result.Connection!, reusable: true);
        }
    }
}

using Proxy.Core.Metrics;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

/// <summary><see cref="UpstreamPoolOptions.MaxConnectionsPerEndpoint"/>: waiting, hand-over, wait timeout, cancellation.</summary>
public sealed class UpstreamPoolLimitTests
{
    [Fact]
    public async Task RentAsync_AtMaxConnections_WaitsAndGetsTheReturnedConnection()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 2 });
        var a = await PoolTest.RentAsync(pool, server.Address);
        var b = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(a, "a");

        var third = pool.RentAsync(server.Address, CancellationToken.None).AsTask();

        Assert.False(third.IsCompleted);
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 0, Waiting: 1), pool.GetStats(server.Address));

        pool.Return(a, reusable: true);
        var result = await third.WaitAsync(TestTimeouts.Short);

        Assert.Same(a, result.Connection);
        Assert.True(a.IsReused);
        Assert.Equal(1, a.UseCount);
        Assert.Equal("again", await PoolTest.ExchangeAsync(a, "again"));
        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(a, reusable: true);
        pool.Return(b, reusable: true);
    }

    [Fact]
    public async Task Return_NotReusableWhileRentWaits_WaiterOpensNewConnectionWithTheFreedSlot()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 });
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        pool.Return(a, reusable: false);
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.True(result.IsSuccess);
        Assert.NotSame(a, result.Connection);
        Assert.False(result.Connection!.IsReused);
        Assert.Equal("new", await PoolTest.ExchangeAsync(result.Connection, "new"));
        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(result.Connection, reusable: true);
    }

    [Fact]
    public async Task RentAsync_SeveralWaiters_ServedInArrivalOrder()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 });
        var a = await PoolTest.RentAsync(pool, server.Address);

        var first = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        var second = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        var third = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        Assert.Equal(3, pool.GetStats(server.Address).Waiting);

        pool.Return(a, reusable: true);
        Assert.Same(a, (await first.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.False(second.IsCompleted);
        Assert.False(third.IsCompleted);

        pool.Return(a, reusable: true);
        Assert.Same(a, (await second.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.False(third.IsCompleted);

        pool.Return(a, reusable: true);
        Assert.Same(a, (await third.WaitAsync(TestTimeouts.Short)).Connection);
        Assert.Equal(3, a.UseCount);
        Assert.Equal(1, await server.AcceptedAtLeastAsync(1));
        pool.Return(a, reusable: true);
    }

    [Fact]
    public async Task RentAsync_NothingReturnedWithinWaitTimeout_FailsWithPoolExhausted()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        var time = new ManualTimeProvider();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = 1,
            WaitTimeout = TimeSpan.FromSeconds(2),
            TimeProvider = time,
        });
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(waiting.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1));
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.PoolExhausted, result.Failure.Cause);
        Assert.Equal(server.Address, result.Failure.Destination);
        Assert.Equal("pool_exhausted", result.Failure.CauseTag);
        Assert.Contains("all 1 connections", result.Failure.Detail, StringComparison.Ordinal);
        Assert.Equal(0, pool.GetStats(server.Address).Waiting);

        // The timed-out waiter is gone: the return goes idle instead of to it.
        pool.Return(a, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
        Assert.Equal(1, await server.AcceptedAtLeastAsync(1));
    }

    [Fact]
    public async Task RentAsync_NoWaitTimeoutSet_WaitsForTheConnectorsConnectTimeout()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(3) });
        var time = new ManualTimeProvider();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1, TimeProvider = time });
        var a = await PoolTest.RentAsync(pool, server.Address);

        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();
        time.Advance(TimeSpan.FromMilliseconds(2999));
        Assert.False(waiting.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal(ConnectFailureCause.PoolExhausted, (await waiting.WaitAsync(TestTimeouts.Short)).Failure.Cause);
        pool.Return(a, reusable: true);
    }

    [Fact]
    public async Task RentAsync_ZeroWaitTimeoutAtLimit_FailsAtOnce()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1, WaitTimeout = TimeSpan.Zero });
        var a = await PoolTest.RentAsync(pool, server.Address);

        var rent = pool.RentAsync(server.Address, CancellationToken.None);
        var completedAtOnce = rent.IsCompletedSuccessfully;
        var result = await rent;

        Assert.True(completedAtOnce);
        Assert.Equal(ConnectFailureCause.PoolExhausted, result.Failure.Cause);
        pool.Return(a, reusable: true);
    }

    [Fact]
    public async Task RentAsync_WaitCancelled_ThrowsAndLeavesNoWaiter()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 });
        var a = await PoolTest.RentAsync(pool, server.Address);
        using var cts = new CancellationTokenSource();

        var waiting = pool.RentAsync(server.Address, cts.Token).AsTask();
        Assert.Equal(1, pool.GetStats(server.Address).Waiting);
        await cts.CancelAsync();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TestTimeouts.Short));
        Assert.Equal(cts.Token, ex.CancellationToken);
        Assert.Equal(0, pool.GetStats(server.Address).Waiting);

        pool.Return(a, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
    }

    [Fact]
    public async Task RentAsync_TokenAlreadyCancelled_ThrowsWithoutConnecting()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => pool.RentAsync(server.Address, new CancellationToken(canceled: true)).AsTask().WaitAsync(TestTimeouts.Short));
        Assert.Equal(0, server.AcceptedCount);
        Assert.Equal(0, pool.GetStats(server.Address).Open);
    }

    [Fact]
    public async Task RentAsync_WaiterHandedAConnectionThatDied_OpensNewOne()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 }, metrics);
        var a = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(a, "a");
        var serverSide = await server.AcceptNextAsync();
        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();

        // The upstream closes while the renter still holds it, and the renter returns it as reusable anyway.
        serverSide.Close();
        await PoolTest.WaitUntilDeadAsync(a);
        pool.Return(a, reusable: true);
        var result = await waiting.WaitAsync(TestTimeouts.Short);

        Assert.True(result.IsSuccess);
        Assert.NotSame(a, result.Connection);
        Assert.Equal("b", await PoolTest.ExchangeAsync(result.Connection!, "b"));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "closed_by_upstream"));
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(result.Connection!, reusable: true);
    }

    [Fact]
    public async Task DisposeAsync_RentWaiting_FailsItWithObjectDisposed()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 });
        var a = await PoolTest.RentAsync(pool, server.Address);
        var waiting = pool.RentAsync(server.Address, CancellationToken.None).AsTask();

        await pool.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TestTimeouts.Short));
        pool.Return(a, reusable: true);
    }
}

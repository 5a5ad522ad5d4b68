using Proxy.Core.Metrics;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

/// <summary><see cref="UpstreamPool.Retire"/>: an endpoint that left discovery drains (idle closed now, busy closed when returned).</summary>
public sealed class UpstreamPoolRetireTests
{
    [Fact]
    public async Task Retire_ClosesIdleNow_BusyWhenReturned_NextRentStartsAfresh()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, metrics: metrics);

        var idle = await PoolTest.RentAsync(pool, server.Address);
        var busy = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(idle, "a");
        var idleServerSide = await server.AcceptNextAsync();
        await PoolTest.ExchangeAsync(busy, "b");
        var busyServerSide = await server.AcceptNextAsync();
        pool.Return(idle, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 1, Waiting: 0), pool.GetStats(server.Address));

        pool.Retire(server.Address);

        Assert.True(await idleServerSide.Closed.WaitAsync(TestTimeouts.Short), "the idle connection is closed gracefully at once");
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "retired"));
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_idle"));

        // The busy one finishes its exchange undisturbed, then is closed instead of kept.
        Assert.Equal("c", await PoolTest.ExchangeAsync(busy, "c"));
        pool.Return(busy, reusable: true);
        Assert.True(await busyServerSide.Closed.WaitAsync(TestTimeouts.Short), "the busy connection is closed when it comes back");
        Assert.Equal(2, recorder.Sum("proxy_pool_connections_discarded", "cause", "retired"));

        // The address came back (or a late retry): a new connection, counted in a new entry.
        var again = await PoolTest.RentAsync(pool, server.Address);
        Assert.False(again.IsReused);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(again, reusable: true);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
    }

    [Fact]
    public async Task Retire_UnknownAddress_DoesNothing()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector);
        pool.Retire(server.Address);
        var rented = await PoolTest.RentAsync(pool, server.Address);
        Assert.Equal("x", await PoolTest.ExchangeAsync(rented, "x"));
        pool.Return(rented, reusable: true);
        Assert.Equal(1, pool.GetStats(server.Address).Idle);
    }
}

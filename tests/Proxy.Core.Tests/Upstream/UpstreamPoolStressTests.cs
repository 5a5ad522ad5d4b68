using System.Net;
using System.Net.Sockets;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

/// <summary>Concurrent rent/return against the limits, and the allocation-free idle rent/return path.</summary>
public sealed class UpstreamPoolStressTests
{
    [Fact]
    public async Task RentAndReturn_ConcurrentTasks_NeverExceedLimitAndCountsAddUp()
    {
        const int Max = 4;
        const int Tasks = 8;
        const int RentsPerTask = 500;
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = Max,
            MaxIdlePerEndpoint = 2,
            WaitTimeout = TestTimeouts.Bulk,
        }, metrics);
        var inUse = 0;
        var maxInUse = 0;
        var maxOpen = 0;
        var notReusable = 0;

        async Task WorkerAsync(int worker)
        {
            for (var i = 0; i < RentsPerTask; i++)
            {
                var result = await pool.RentAsync(server.Address, CancellationToken.None);
                Assert.True(result.IsSuccess, result.IsSuccess ? null : result.Failure.ToString());
                var now = Interlocked.Increment(ref inUse);
                InterlockedMax(ref maxInUse, now);
                InterlockedMax(ref maxOpen, pool.GetStats(server.Address).Open);

                // Every fifth exchange really goes over the wire; every seventh return is not reusable.
                if (i % 5 == 0)
                {
                    var text = $"w{worker}-{i}";
                    Assert.Equal(text, await PoolTest.ExchangeAsync(result.Connection!, text));
                }
                else
                {
                    await Task.Yield();
                }

                var reusable = (i + worker) % 7 != 0;
                if (!reusable)
                {
                    Interlocked.Increment(ref notReusable);
                }

                Interlocked.Decrement(ref inUse);
                pool.Return(result.Connection!, reusable);
            }
        }

        var workers = new Task[Tasks];
        for (var w = 0; w < Tasks; w++)
        {
            var worker = w;
            workers[w] = Task.Run(() => WorkerAsync(worker));
        }

        await Task.WhenAll(workers).WaitAsync(TestTimeouts.Bulk);

        var stats = pool.GetStats(server.Address);
        Assert.InRange(maxInUse, 1, Max);
        Assert.InRange(maxOpen, 1, Max);
        Assert.Equal(0, stats.Waiting);
        Assert.Equal(stats.Open, stats.Idle);
        // At most MaxIdlePerEndpoint kept; none when the last exchange on each open connection happened to be one of
        // the non-reusable returns (every seventh), so 0 is a legitimate end state.
        Assert.InRange(stats.Idle, 0, 2);

        // Every connection the server accepted was created by the pool, and every one of them is either still
        // idle or was discarded for a reason we know.
        var created = recorder.Sum("proxy_pool_connections_created");
        var discarded = recorder.Sum("proxy_pool_connections_discarded");
        Assert.Equal(created, await server.AcceptedAtLeastAsync((int)created));
        Assert.Equal(created, discarded + stats.Open);
        Assert.Equal(notReusable, recorder.Sum("proxy_pool_connections_discarded", "cause", "not_reusable"));
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_discarded", "cause", "closed_by_upstream"));
        Assert.Equal(stats.Idle, recorder.Sum("proxy_pool_connections_idle"));
        Assert.Equal((Tasks * RentsPerTask) - created, recorder.Sum("proxy_pool_connections_reused"));

        // The server sees the discarded ones close: what stays open there is what the pool keeps.
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (server.OpenCount != stats.Open)
        {
            Assert.True(DateTime.UtcNow < deadline, $"server still has {server.OpenCount} open, pool {stats.Open}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task RentAsync_ConcurrentCancellationsAndWaitTimeouts_LeakNoSlotAndNoWaiter()
    {
        const int Max = 2;
        const int Tasks = 8;
        const int RentsPerTask = 300;
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = Max,
            WaitTimeout = TimeSpan.FromMilliseconds(2),
        });
        var inUse = 0;
        var maxInUse = 0;
        var outcomes = new int[3];

        async Task WorkerAsync(int worker)
        {
            for (var i = 0; i < RentsPerTask; i++)
            {
                // Cancellation lands anywhere: before the rent, while waiting, while connecting, or never.
                using var cts = new CancellationTokenSource();
                cts.CancelAfter((i + worker) % 4);
                try
                {
                    var result = await pool.RentAsync(server.Address, cts.Token);
                    if (!result.IsSuccess)
                    {
                        Assert.Equal(ConnectFailureCause.PoolExhausted, result.Failure.Cause);
                        Interlocked.Increment(ref outcomes[1]);
                        continue;
                    }

                    InterlockedMax(ref maxInUse, Interlocked.Increment(ref inUse));
                    Interlocked.Increment(ref outcomes[0]);
                    await Task.Yield();
                    Interlocked.Decrement(ref inUse);
                    pool.Return(result.Connection!, reusable: i % 5 != 0);
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref outcomes[2]);
                }
            }
        }

        var workers = new Task[Tasks];
        for (var w = 0; w < Tasks; w++)
        {
            var worker = w;
            workers[w] = Task.Run(() => WorkerAsync(worker));
        }

        await Task.WhenAll(workers).WaitAsync(TestTimeouts.Bulk);

        Assert.Equal(Tasks * RentsPerTask, outcomes[0] + outcomes[1] + outcomes[2]);
        Assert.True(outcomes[0] > 0, "some rents should succeed");
        Assert.InRange(maxInUse, 1, Max);
        var stats = pool.GetStats(server.Address);
        Assert.Equal(0, stats.Waiting);
        Assert.Equal(stats.Open, stats.Idle);
        Assert.InRange(stats.Open, 0, Max);

        // Every slot is free again: Max rents at once succeed without waiting.
        var all = new PooledConnection[Max];
        for (var i = 0; i < Max; i++)
        {
            all[i] = await PoolTest.RentAsync(pool, server.Address);
        }

        Assert.Equal(new UpstreamPoolStats(Open: Max, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        foreach (var connection in all)
        {
            pool.Return(connection, reusable: true);
        }
    }

    [Fact]
    public async Task RentAndReturn_IdleConnection_AllocatesNothing()
    {
        // Blocking peer (never an async call on it): .NET's emulation of blocking calls on an async socket allocates.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var address = new UpstreamAddress((IPEndPoint)listener.LocalEndPoint!);
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        await using var pool = new UpstreamPool(connector, metrics: metrics);
        var first = await PoolTest.RentAsync(pool, address);
        listener.ReceiveTimeout = 10_000;
        using var serverSide = listener.Accept();
        pool.Return(first, reusable: true);

        // Warm up (JIT, tiering, the exporter's first series), then measure on this thread only.
        RentReturn(pool, address, 1_000);
        var before = GC.GetAllocatedBytesForCurrentThread();
        RentReturn(pool, address, 10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(1, pool.GetStats(address).Open);
        Assert.Contains("proxy_pool_connections_reused_total 11000", exporter.Render(), StringComparison.Ordinal);
    }

    private static void RentReturn(UpstreamPool pool, UpstreamAddress address, int count)
    {
        for (var i = 0; i < count; i++)
        {
            var rent = pool.RentAsync(address, CancellationToken.None);
            if (!rent.IsCompletedSuccessfully)
            {
                throw new InvalidOperationException("An idle rent must complete synchronously.");
            }

            var connection = rent.Result.Connection!;
            pool.Return(connection, reusable: true);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}

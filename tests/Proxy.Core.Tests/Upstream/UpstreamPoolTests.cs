using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

/// <summary>Reuse, liveness checks, idle timeout, overflow and disposal of <see cref="UpstreamPool"/>, over real loopback sockets.</summary>
public sealed class UpstreamPoolTests
{
    [Fact]
    public async Task RentAsync_AfterReusableReturn_ReturnsSameConnectionMarkedReused()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, metrics: metrics);

        var first = await PoolTest.RentAsync(pool, server.Address);
        Assert.False(first.IsReused);
        Assert.Equal(0, first.UseCount);
        Assert.Equal("one", await PoolTest.ExchangeAsync(first, "one"));
        pool.Return(first, reusable: true);

        var second = await PoolTest.RentAsync(pool, server.Address);

        Assert.Same(first, second);
        Assert.Same(first.Connection, second.Connection);
        Assert.True(second.IsReused);
        Assert.Equal(1, second.UseCount);
        Assert.Equal("two", await PoolTest.ExchangeAsync(second, "two"));
        Assert.Equal(1, await server.AcceptedAtLeastAsync(1));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_created"));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_reused"));
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_idle"));
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));

        pool.Return(second, reusable: true);
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_idle"));
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
    }

    [Fact]
    public async Task Return_NotReusable_ClosesConnectionAndServerSeesEof()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, metrics: metrics);

        var rented = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(rented, "hello");
        var serverSide = await server.AcceptNextAsync();

        pool.Return(rented, reusable: false);

        Assert.True(await serverSide.Closed.WaitAsync(TestTimeouts.Short), "the server should see a FIN, not a reset");
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "not_reusable"));
        Assert.Equal(0, pool.GetStats(server.Address).Open);

        var next = await PoolTest.RentAsync(pool, server.Address);
        Assert.NotSame(rented, next);
        Assert.False(next.IsReused);

        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        pool.Return(next, reusable: true);
    }

    [Fact]
    public async Task Return_NotReusableToUpstreamThatStoppedReading_ResetsAfterCloseTimeout()
    {
        using var listener = TestListener.Start();
        using var connector = new UpstreamConnector();
        var time = new ManualTimeProvider();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { CloseTimeout = TimeSpan.FromSeconds(5), TimeProvider = time });
        var rented = await PoolTest.RentAsync(pool, new UpstreamAddress(listener.EndPoint));
        using var server = await listener.AcceptAsync();
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = rented.Connection.ConnectionClosed.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), closed);

        // Far more than the loopback socket buffers hold: the graceful close cannot finish while the server does not read.
        rented.Connection.Transport.Output.Write(new byte[32 * 1024 * 1024]);
        pool.Return(rented, reusable: false);

        Assert.False(closed.Task.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(5));
        await closed.Task.WaitAsync(TestTimeouts.Short);

        var ex = await Assert.ThrowsAsync<SocketException>(() => server.ReadToEndAsync());
        Assert.Equal(SocketError.ConnectionReset, ex.SocketErrorCode);
    }

    [Fact]
    public async Task RentAsync_UpstreamClosedIdleConnection_DiscardsItAndOpensFreshOne()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, metrics: metrics);

        var first = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(first, "ping");
        var serverSide = await server.AcceptNextAsync();
        pool.Return(first, reusable: true);

        // The upstream's idle timer closes the connection; wait until our receive loop has seen the FIN.
        serverSide.Close();
        await PoolTest.WaitUntilDeadAsync(first);

        var second = await PoolTest.RentAsync(pool, server.Address);

        Assert.NotSame(first, second);
        Assert.False(second.IsReused);
        Assert.Equal("pong", await PoolTest.ExchangeAsync(second, "pong"));
        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "closed_by_upstream"));
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_reused"));
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(second, reusable: true);
    }

    [Fact]
    public async Task RentAsync_IdleConnectionReceivedUnexpectedBytes_DiscardsIt()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector);

        var first = await PoolTest.RentAsync(pool, server.Address);
        await PoolTest.ExchangeAsync(first, "ping");
        var serverSide = await server.AcceptNextAsync();
        pool.Return(first, reusable: true);

        // An upstream that talks while idle is broken (or sending an error before closing): never reuse it.
        await serverSide.Socket.SendAllAsync("HTTP/1.1 408 Request Timeout\r\n\r\n"u8.ToArray());
        await PoolTest.WaitUntilDeadAsync(first);

        var second = await PoolTest.RentAsync(pool, server.Address);

        Assert.NotSame(first, second);
        Assert.False(second.IsReused);
        Assert.True(await serverSide.Closed.WaitAsync(TestTimeouts.Short));
        pool.Return(second, reusable: true);
    }

    [Fact]
    public async Task RentAsync_TopIdleConnectionExpired_DiscardsItAndOpensFreshOne()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        var clock = new SteppedClock();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { IdleTimeout = TimeSpan.FromSeconds(30), TimeProvider = clock }, metrics);

        var first = await PoolTest.RentAsync(pool, server.Address);
        var serverSide = await server.AcceptNextAsync();
        pool.Return(first, reusable: true);

        // The sweep timer does not run on this clock: the rent itself must notice the age.
        clock.Advance(TimeSpan.FromSeconds(29));
        var reused = await PoolTest.RentAsync(pool, server.Address);
        Assert.Same(first, reused);
        pool.Return(reused, reusable: true);

        clock.Advance(TimeSpan.FromSeconds(30));
        var fresh = await PoolTest.RentAsync(pool, server.Address);

        Assert.NotSame(first, fresh);
        Assert.False(fresh.IsReused);
        Assert.True(await serverSide.Closed.WaitAsync(TestTimeouts.Short));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "idle_timeout"));
        pool.Return(fresh, reusable: true);
    }

    [Fact]
    public async Task Sweep_IdleTimeoutPasses_ClosesIdleConnectionAndForgetsEndpoint()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        var time = new ManualTimeProvider();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { IdleTimeout = TimeSpan.FromSeconds(60), TimeProvider = time }, metrics);
        Assert.Equal(TimeSpan.FromSeconds(5), pool.SweepPeriod);

        var rented = await PoolTest.RentAsync(pool, server.Address);
        var serverSide = await server.AcceptNextAsync();
        pool.Return(rented, reusable: true);

        // Sweeps before the timeout keep it.
        for (var i = 0; i < 11; i++)
        {
            time.Advance(TimeSpan.FromSeconds(5));
        }

        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 1, Waiting: 0), pool.GetStats(server.Address));
        Assert.False(serverSide.Closed.IsCompleted);

        time.Advance(TimeSpan.FromSeconds(5));

        Assert.True(await serverSide.Closed.WaitAsync(TestTimeouts.Short));
        Assert.Equal(default, pool.GetStats(server.Address));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "idle_timeout"));
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_idle"));

        // The endpoint comes back on the next rent.
        var again = await PoolTest.RentAsync(pool, server.Address);
        Assert.False(again.IsReused);
        Assert.Equal(new UpstreamPoolStats(Open: 1, Idle: 0, Waiting: 0), pool.GetStats(server.Address));
        pool.Return(again, reusable: true);
    }

    [Fact]
    public async Task Sweep_UpstreamClosedIdleConnection_ClosesItWithoutWaitingForARent()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { TimeProvider = new SteppedClock() }, metrics);

        var a = await PoolTest.RentAsync(pool, server.Address);
        var b = await PoolTest.RentAsync(pool, server.Address);
        var c = await PoolTest.RentAsync(pool, server.Address);
        var serverSides = new[] { await server.AcceptNextAsync(), await server.AcceptNextAsync(), await server.AcceptNextAsync() };
        pool.Return(a, reusable: true);
        pool.Return(b, reusable: true);
        pool.Return(c, reusable: true);

        // Close the one in the middle of the stack: only a sweep can find it before the rents get there.
        var middle = Array.Find(serverSides, s => s.Socket.RemoteEndPoint!.Equals(b.Connection.LocalEndPoint))!;
        middle.Close();
        await PoolTest.WaitUntilDeadAsync(b);

        pool.Sweep();

        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 2, Waiting: 0), pool.GetStats(server.Address));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "closed_by_upstream"));

        // The survivors keep their LIFO order: c (returned last), then a.
        Assert.Same(c, await PoolTest.RentAsync(pool, server.Address));
        Assert.Same(a, await PoolTest.RentAsync(pool, server.Address));
        pool.Return(a, reusable: true);
        pool.Return(c, reusable: true);
    }

    [Fact]
    public async Task RentAsync_SeveralIdle_ReturnsMostRecentlyReturnedFirst()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector);

        var a = await PoolTest.RentAsync(pool, server.Address);
        var b = await PoolTest.RentAsync(pool, server.Address);
        pool.Return(a, reusable: true);
        pool.Return(b, reusable: true);

        Assert.Same(b, await PoolTest.RentAsync(pool, server.Address));
        Assert.Same(a, await PoolTest.RentAsync(pool, server.Address));
        Assert.Equal(2, await server.AcceptedAtLeastAsync(2));
        pool.Return(a, reusable: true);
        pool.Return(b, reusable: true);
    }

    [Fact]
    public async Task Return_IdleStackFull_ClosesOldestIdleConnection()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxIdlePerEndpoint = 2 }, metrics);

        var rented = new PooledConnection[3];
        for (var i = 0; i < rented.Length; i++)
        {
            rented[i] = await PoolTest.RentAsync(pool, server.Address);
        }

        var serverSides = new[] { await server.AcceptNextAsync(), await server.AcceptNextAsync(), await server.AcceptNextAsync() };
        var oldest = Array.Find(serverSides, s => s.Socket.RemoteEndPoint!.Equals(rented[0].Connection.LocalEndPoint))!;
        foreach (var connection in rented)
        {
            pool.Return(connection, reusable: true);
        }

        Assert.True(await oldest.Closed.WaitAsync(TestTimeouts.Short));
        Assert.Equal(new UpstreamPoolStats(Open: 2, Idle: 2, Waiting: 0), pool.GetStats(server.Address));
        Assert.Equal(1, recorder.Sum("proxy_pool_connections_discarded", "cause", "overflow"));
        Assert.Equal(2, recorder.Sum("proxy_pool_connections_idle"));
        Assert.Same(rented[2], await PoolTest.RentAsync(pool, server.Address));
        Assert.Same(rented[1], await PoolTest.RentAsync(pool, server.Address));
        pool.Return(rented[1], reusable: true);
        pool.Return(rented[2], reusable: true);
    }

    [Fact]
    public async Task Return_MaxIdleZero_ClosesEveryReturnedConnection()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxIdlePerEndpoint = 0 });

        var rented = await PoolTest.RentAsync(pool, server.Address);
        var serverSide = await server.AcceptNextAsync();
        pool.Return(rented, reusable: true);

        Assert.True(await serverSide.Closed.WaitAsync(TestTimeouts.Short));
        Assert.Equal(0, pool.GetStats(server.Address).Open);
    }

    [Fact]
    public async Task RentAsync_NothingListening_FailsWithRefusedAndFreesTheSlot()
    {
        using var connector = new UpstreamConnector();
        await using var pool = new UpstreamPool(connector, new UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1 });
        var address = new UpstreamAddress(TestSockets.UnusedEndPoint());

        var first = await pool.RentAsync(address, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        var second = await pool.RentAsync(address, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.False(first.IsSuccess);
        Assert.Equal(ConnectFailureCause.Refused, first.Failure.Cause);
        Assert.Equal(address, first.Failure.Destination);

        // Had the first failure kept its slot, the second rent would have waited and failed with PoolExhausted.
        Assert.Equal(ConnectFailureCause.Refused, second.Failure.Cause);
        Assert.Equal(0, pool.GetStats(address).Open);
    }

    [Fact]
    public async Task DisposeAsync_IdleAndRentedConnections_ClosesIdleNowAndRentedOnReturn()
    {
        await using var server = PoolTestServer.Start();
        using var connector = new UpstreamConnector();
        using var metrics = new ProxyMetrics();
        using var recorder = new PoolMetricsRecorder(metrics);
        var pool = new UpstreamPool(connector, metrics: metrics);

        var idle = await PoolTest.RentAsync(pool, server.Address);
        var rented = await PoolTest.RentAsync(pool, server.Address);
        var serverSides = new[] { await server.AcceptNextAsync(), await server.AcceptNextAsync() };
        var idleServerSide = Array.Find(serverSides, s => s.Socket.RemoteEndPoint!.Equals(idle.Connection.LocalEndPoint))!;
        var rentedServerSide = Array.Find(serverSides, s => s.Socket.RemoteEndPoint!.Equals(rented.Connection.LocalEndPoint))!;
        pool.Return(idle, reusable: true);

        await pool.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);

        Assert.True(await idleServerSide.Closed.WaitAsync(TestTimeouts.Short));
        Assert.False(rentedServerSide.Closed.IsCompleted);
        Assert.Equal(0, recorder.Sum("proxy_pool_connections_idle"));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => pool.RentAsync(server.Address, CancellationToken.None).AsTask());

        // Still usable by its renter; closed when it comes back, even as reusable.
        Assert.Equal("late", await PoolTest.ExchangeAsync(rented, "late"));
        pool.Return(rented, reusable: true);
        Assert.True(await rentedServerSide.Closed.WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public void Constructor_InvalidOptions_ThrowsNamingEverySetting()
    {
        using var connector = new UpstreamConnector();
        var options = new UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = -1,
            MaxIdlePerEndpoint = -2,
            IdleTimeout = TimeSpan.Zero,
            WaitTimeout = TimeSpan.FromSeconds(-3),
        };

        var ex = Assert.Throws<ArgumentException>(() => new UpstreamPool(connector, options));

        Assert.Contains("MaxConnectionsPerEndpoint", ex.Message, StringComparison.Ordinal);
        Assert.Contains("MaxIdlePerEndpoint", ex.Message, StringComparison.Ordinal);
        Assert.Contains("IdleTimeout", ex.Message, StringComparison.Ordinal);
        Assert.Contains("WaitTimeout", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Constructor_ShortIdleTimeout_SweepsEveryHalfTimeout()
    {
        using var connector = new UpstreamConnector();
        await using var shortPool = new UpstreamPool(connector, new UpstreamPoolOptions { IdleTimeout = TimeSpan.FromSeconds(4) });
        await using var infinitePool = new UpstreamPool(connector, new UpstreamPoolOptions { IdleTimeout = Timeout.InfiniteTimeSpan });

        Assert.Equal(TimeSpan.FromSeconds(2), shortPool.SweepPeriod);
        Assert.Equal(TimeSpan.FromSeconds(5), infinitePool.SweepPeriod);
    }
}

/// <summary>Helpers shared by the pool tests.</summary>
internal static class PoolTest
{
    public static async Task<PooledConnection> RentAsync(UpstreamPool pool, UpstreamAddress address)
    {
        var result = await pool.RentAsync(address, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.True(result.IsSuccess, result.IsSuccess ? null : result.Failure.ToString());
        return result.Connection!;
    }

    /// <summary>One request/response on the pooled connection against the echo server: writes <paramref name="text"/>, reads it back.</summary>
    public static async Task<string> ExchangeAsync(PooledConnection connection, string text)
    {
        var transport = connection.Connection.Transport;
        await transport.Output.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask().WaitAsync(TestTimeouts.Short);
        while (true)
        {
            var result = await transport.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
            var buffer = result.Buffer;
            if (buffer.Length >= text.Length)
            {
                var echoed = Encoding.ASCII.GetString(buffer.Slice(0, text.Length));
                transport.Input.AdvanceTo(buffer.GetPosition(text.Length));
                return echoed;
            }

            if (result.IsCompleted)
            {
                throw new EndOfStreamException($"The upstream closed after {buffer.Length} of {text.Length} echoed bytes.");
            }

            transport.Input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Polls (briefly, bounded) until the idle connection's receive loop has seen what the server did.</summary>
    public static async Task WaitUntilDeadAsync(PooledConnection connection)
    {
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (UpstreamPool.IsAlive(connection.Connection))
        {
            Assert.True(DateTime.UtcNow < deadline, "the idle connection never noticed the upstream's close");
            await Task.Delay(5);
        }
    }
}

/// <summary>
/// A loopback echo server on port 0: echoes every connection, counts accepted and open connections, and hands
/// each accepted connection to the test (to close it or watch it close).
/// </summary>
internal sealed class PoolTestServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Channel<ServerConnection> _accepted = Channel.CreateUnbounded<ServerConnection>();
    private readonly ConcurrentBag<ServerConnection> _all = [];
    private readonly Task _acceptLoop;
    private readonly List<TaskCompletionSource> _waiters = [];
    private int _acceptedCount;
    private int _openCount;

    private PoolTestServer(Socket listener)
    {
        _listener = listener;
        EndPoint = (IPEndPoint)listener.LocalEndPoint!;
        Address = new UpstreamAddress(EndPoint);
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint { get; }

    public UpstreamAddress Address { get; }

    public int AcceptedCount => Volatile.Read(ref _acceptedCount);

    /// <summary>
    /// Waits until at least <paramref name="count"/> connections were accepted and returns the count: a client's
    /// connect can complete before this server's accept loop has run.
    /// </summary>
    public async Task<int> AcceptedAtLeastAsync(int count)
    {
        while (true)
        {
            TaskCompletionSource signal;
            lock (_waiters)
            {
                if (_acceptedCount >= count)
                {
                    return _acceptedCount;
                }

                signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add(signal);
            }

            await signal.Task.WaitAsync(TestTimeouts.Short);
        }
    }

    /// <summary>Accepted and not yet closed by either side.</summary>
    public int OpenCount => Volatile.Read(ref _openCount);

    public static PoolTestServer Start()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(512);
        return new PoolTestServer(socket);
    }

    public async Task<ServerConnection> AcceptNextAsync() => await _accepted.Reader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _acceptLoop.WaitAsync(TestTimeouts.Short);
        foreach (var connection in _all)
        {
            connection.Close();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _openCount);
            lock (_waiters)
            {
                _acceptedCount++;
                foreach (var waiter in _waiters)
                {
                    waiter.TrySetResult();
                }

                _waiters.Clear();
            }

            var connection = new ServerConnection(socket, () => Interlocked.Decrement(ref _openCount));
            _all.Add(connection);
            _accepted.Writer.TryWrite(connection);
        }
    }
}

/// <summary>The server's side of one connection: echoes until EOF, then closes.</summary>
internal sealed class ServerConnection
{
    private readonly TaskCompletionSource<bool> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action _onClosed;
    private int _closedOnce;

    public ServerConnection(Socket socket, Action onClosed)
    {
        Socket = socket;
        _onClosed = onClosed;
        _ = EchoAsync();
    }

    public Socket Socket { get; }

    /// <summary>Completes when the connection ended: true for the client's FIN, false for a reset or a local close.</summary>
    public Task<bool> Closed => _closed.Task;

    /// <summary>The server closes its side (the upstream's own idle timeout).</summary>
    public void Close()
    {
        Socket.Dispose();
        Finish(false);
    }

    private async Task EchoAsync()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var n = await Socket.ReceiveAsync(buffer.AsMemory());
                if (n == 0)
                {
                    Socket.Dispose();
                    Finish(true);
                    return;
                }

                await Socket.SendAsync(buffer.AsMemory(0, n));
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Socket.Dispose();
            Finish(false);
        }
    }

    private void Finish(bool eof)
    {
        if (Interlocked.Exchange(ref _closedOnce, 1) == 0)
        {
            _onClosed();
            _closed.TrySetResult(eof);
        }
    }
}

/// <summary>Records the pool instruments of one <see cref="ProxyMetrics"/> instance.</summary>
internal sealed class PoolMetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, long Value, string? Cause)> _measurements = new();

    public PoolMetricsRecorder(ProxyMetrics metrics)
    {
        HashSet<Instrument> instruments =
        [
            metrics.PoolConnectionsCreated, metrics.PoolConnectionsReused, metrics.PoolConnectionsIdle, metrics.PoolConnectionsDiscarded,
        ];
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instruments.Contains(instrument))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? cause = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "cause")
                {
                    cause = tag.Value?.ToString();
                }
            }

            _measurements.Enqueue((instrument.Name, value, cause));
        });
        _listener.Start();
    }

    public long Sum(string instrument, string? tagKey = null, string? tagValue = null)
    {
        Assert.True(tagKey is null or "cause");
        long sum = 0;
        foreach (var (name, value, cause) in _measurements)
        {
            if (name == instrument && (tagKey is null || cause == tagValue))
            {
                sum += value;
            }
        }

        return sum;
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>A clock that moves only when told and whose timers never fire: for checks the sweep must not do first.</summary>
internal sealed class SteppedClock : TimeProvider
{
    private long _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Volatile.Read(ref _ticks);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => new InertTimer();

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);

    private sealed class InertTimer : ITimer
    {
        public bool Change(TimeSpan dueTime, TimeSpan period) => true;

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

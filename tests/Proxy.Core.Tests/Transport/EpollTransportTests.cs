using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Transport.Epoll;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Transport;

public sealed class EpollTransportTests
{
    [Fact]
    public async Task ReadinessSignal_SetBeforeWait_CompletesSynchronouslyAndIsConsumed()
    {
        var signal = new ReadinessSignal();
        signal.Set();
        signal.Set();
        Assert.True(signal.IsSet);

        var wait = signal.WaitAsync();
        Assert.True(wait.IsCompletedSuccessfully);
        await wait;
        Assert.False(signal.IsSet);

        // Two Sets before one wait count once: the next wait really waits.
        var next = signal.WaitAsync();
        Assert.False(next.IsCompleted);
        signal.Set();
        await next.AsTask().WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task ReadinessSignal_SetFromAnotherThreadInALoop_NeverLosesAWakeup()
    {
        // A producer that sets once per item and a consumer that waits before taking items: a lost wakeup would
        // leave the consumer waiting with items queued and the test timing out.
        var signal = new ReadinessSignal();
        var queued = 0;
        const int Items = 200_000;
        var producer = Task.Run(() =>
        {
            for (var i = 0; i < Items; i++)
            {
                Interlocked.Increment(ref queued);
                signal.Set();
            }
        });

        var consumed = 0;
        while (consumed < Items)
        {
            if (Volatile.Read(ref queued) == consumed)
            {
                await signal.WaitAsync().AsTask().WaitAsync(TestTimeouts.Short);
            }

            consumed = Volatile.Read(ref queued);
        }

        await producer.WaitAsync(TestTimeouts.Short);
        Assert.Equal(Items, consumed);
    }

    [Fact]
    public async Task Connector_OnEventLoop_ConnectsAndExchangesBytes()
    {
        using var listener = TestListener.Start();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { Transport = new SocketTransportOptions { IoThreads = 1 } });

        var result = await connector.TryConnectAsync(new Proxy.Core.Addresses.UpstreamAddress(listener.EndPoint), default).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.NotNull(result.Connection);
        await using var connection = result.Connection;
        using var server = await listener.AcceptAsync();

        Assert.Equal(listener.EndPoint, connection.RemoteEndPoint);
        Assert.Equal(server.RemoteEndPoint, connection.LocalEndPoint);

        await connection.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("ping")).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("ping", Encoding.ASCII.GetString(await server.ReadExactlyAsync(4)));
        await server.SendAllAsync(Encoding.ASCII.GetBytes("pong"));
        var read = await connection.Transport.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("pong", Encoding.ASCII.GetString(read.Buffer.FirstSpan));
        connection.Transport.Input.AdvanceTo(read.Buffer.End);
    }

    [Fact]
    public void IoBatch_OffTheLoop_NothingDeferred()
    {
        var ran = false;
        Assert.False(IoBatch.TryDefer(_ => ran = true, null));
        Assert.False(ran);
    }

    [Fact]
    public async Task IoBatch_OnTheLoop_RunsAfterTheCodeThatDeferredOnTheSameThread()
    {
        using var listener = TestListener.Start();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { Transport = new SocketTransportOptions { IoThreads = 1 } });
        var seenOnLoop = 0;
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var result = await connector.TryConnectAsync(new Proxy.Core.Addresses.UpstreamAddress(listener.EndPoint), default).AsTask().WaitAsync(TestTimeouts.Short);
            await using var connection = result.Connection!;
            using var server = await listener.AcceptAsync();
            var outcome = new TaskCompletionSource<(bool OnLoop, bool Deferred, bool SameThread, bool AfterCaller)>(TaskCreationOptions.RunContinuationsAsynchronously);

            // The read usually completes on the loop thread (the transport resumes readers inline); defer from there.
            _ = connection.Transport.Input.ReadAsync().AsTask().ContinueWith(
                _ =>
                {
                    var onLoop = Thread.CurrentThread.Name?.StartsWith("epoll", StringComparison.Ordinal) == true;
                    var thread = Environment.CurrentManagedThreadId;
                    var callerDone = false;
                    var deferred = IoBatch.TryDefer(_ => outcome.TrySetResult((onLoop, true, thread == Environment.CurrentManagedThreadId, callerDone)), null);
                    callerDone = true;
                    if (!deferred)
                    {
                        outcome.TrySetResult((onLoop, false, false, false));
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            await server.SendAllAsync(Encoding.ASCII.GetBytes("x"));

            var (onLoopThread, wasDeferred, sameThread, afterCaller) = await outcome.Task.WaitAsync(TestTimeouts.Short);

            // Deferred exactly when on a loop thread; then later, on the same thread, after the caller returned.
            Assert.Equal(onLoopThread, wasDeferred);
            if (wasDeferred)
            {
                seenOnLoop++;
                Assert.True(sameThread);
                Assert.True(afterCaller);
            }
        }

        Assert.True(seenOnLoop > 0, "no read completed on the event loop thread in 5 attempts");
    }

    [Fact]
    public async Task Connector_OnEventLoop_RefusedIsReportedAsRefused()
    {
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { Transport = new SocketTransportOptions { IoThreads = 1 } });

        var result = await connector.TryConnectAsync(new Proxy.Core.Addresses.UpstreamAddress(TestSockets.UnusedEndPoint()), default).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Null(result.Connection);
        Assert.Equal(ConnectFailureCause.Refused, result.Failure.Cause);
    }

    [Fact]
    public async Task Connector_OnEventLoop_CancelledWhilePending_ThrowsOperationCanceled()
    {
        // A listener whose backlog is full and never accepted leaves further connects pending (SYN unanswered).
        using var listenSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listenSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listenSocket.Listen(0);
        var endPoint = (IPEndPoint)listenSocket.LocalEndPoint!;
        var fillers = new List<Socket>();
        try
        {
            var group = EpollLoopGroup.GetShared(1);
            var loop = group.Pick();
            for (var i = 0; i < 8; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(socket);
                var epoll = new EpollSocket(socket);
                using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
                try
                {
                    await epoll.ConnectAsync(endPoint, loop, cts.Token).AsTask().WaitAsync(TestTimeouts.Short);
                }
                catch (OperationCanceledException)
                {
                    // The pending connect was given up on time; the caller closes the socket, which unregisters it.
                    socket.Dispose();
                    epoll.OnClosed();
                    return;
                }
            }

            Assert.Fail("every connect completed; the kernel accepted more than the backlog allows");
        }
        finally
        {
            foreach (var socket in fillers)
            {
                socket.Dispose();
            }
        }
    }
}

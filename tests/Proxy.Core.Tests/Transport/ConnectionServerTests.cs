using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Transport.Epoll;
using Xunit;

namespace Proxy.Core.Tests.Transport;

/// <summary>The dispatcher that runs connection middleware over our transport (what KestrelServer did for the sidecar).</summary>
public sealed class ConnectionServerTests : IDisposable
{
    private static readonly IPEndPoint AnyPort = new(IPAddress.Loopback, 0);
    private readonly SocketTransportFactory _transport = new(new SocketTransportOptions { IoThreads = 1 });

    public void Dispose() => _transport.Dispose();

    [Fact]
    public async Task EachEndpoint_ServedByItsMiddleware_OnItsBoundPort()
    {
        await using var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, connection => Answer(connection, "from a"));
        server.Add("b", AnyPort, connection => Answer(connection, "from b"));
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        var a = (IPEndPoint)server.EndPointOf("a")!;
        var b = (IPEndPoint)server.EndPointOf("b")!;
        Assert.NotEqual(0, a.Port);
        Assert.NotEqual(a.Port, b.Port);
        Assert.Equal([("a", (EndPoint)a), ("b", b)], server.EndPoints);
        Assert.Null(server.EndPointOf("c"));

        // Several connections each: the accept loop goes on after starting each one.
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("from a", await ReadToEndAsync(a));
            Assert.Equal("from b", await ReadToEndAsync(b));
        }
    }

    [Fact]
    public async Task Inline_MiddlewareStartsOnTheEventLoopThatAccepted()
    {
        var threads = new List<(bool OnLoop, bool OnPool)>();
        await using var server = new ConnectionServer(_transport, NullLogger.Instance, inline: true);
        server.Add("a", AnyPort, connection =>
        {
            lock (threads)
            {
                threads.Add((EpollLoop.Current is not null, Thread.CurrentThread.IsThreadPoolThread));
            }

            return Answer(connection, "ok");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        // The first accept may complete on the thread that started the accept loop (a connection already queued when
        // it first looked); from then on the loop's readiness events drive it, and the middleware starts on the loop.
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("ok", await ReadToEndAsync((IPEndPoint)server.EndPointOf("a")!));
        }

        lock (threads)
        {
            Assert.Equal(4, threads.Count);
            Assert.All(threads.Skip(1), t => Assert.Equal((true, false), t));
        }
    }

    [Fact]
    public async Task Inline_MiddlewareAndItsContinuationsOnTheLoop_CaptureNoExecutionContext()
    {
        // Flow is suppressed on the event loop: an async method the middleware starts there, and everything resumed
        // there after a read, captures no execution context (no ExecutionContext.RunInternal per resumption).
        var seen = new List<(bool OnLoop, bool Captured)>();
        await using var server = new ConnectionServer(_transport, NullLogger.Instance, inline: true);
        server.Add("a", AnyPort, async connection =>
        {
            lock (seen)
            {
                seen.Add((EpollLoop.Current is not null, ExecutionContext.Capture() is not null));
            }

            var read = await connection.Transport.Input.ReadAsync();
            lock (seen)
            {
                seen.Add((EpollLoop.Current is not null, ExecutionContext.Capture() is not null));
            }

            connection.Transport.Input.AdvanceTo(read.Buffer.End);
            await Answer(connection, "ok");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        for (var i = 0; i < 3; i++)
        {
            using var client = await TestSockets.ConnectAsync((IPEndPoint)server.EndPointOf("a")!);
            await client.SendAsync("x"u8.ToArray()).WaitAsync(TestTimeouts.Short);
            Assert.Equal("ok", await ReadToEndAsync(client));
        }

        lock (seen)
        {
            Assert.Equal(6, seen.Count);
            // Past the first connection (which may start on the pool thread that started the accept loop) all on the loop.
            Assert.All(seen.Skip(2), s => Assert.Equal((true, false), s));
            Assert.All(seen, s => Assert.False(s.Captured));
        }
    }

    [Fact]
    public async Task NotInline_MiddlewareStartsOnTheThreadPool()
    {
        var started = new TaskCompletionSource<(bool OnLoop, bool OnPool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ConnectionServer(_transport, NullLogger.Instance, inline: false);
        server.Add("a", AnyPort, connection =>
        {
            started.TrySetResult((EpollLoop.Current is not null, Thread.CurrentThread.IsThreadPoolThread));
            return Answer(connection, "ok");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        Assert.Equal("ok", await ReadToEndAsync((IPEndPoint)server.EndPointOf("a")!));
        var (onLoop, onPool) = await started.Task.WaitAsync(TestTimeouts.Short);
        Assert.False(onLoop);
        Assert.True(onPool);
    }

    [Fact]
    public async Task MiddlewareThatThrows_ConnectionIsClosed_AndTheServerGoesOn()
    {
        var calls = 0;
        await using var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, connection =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                throw new InvalidOperationException("synchronous failure");
            }

            return Answer(connection, "second");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);
        var endPoint = (IPEndPoint)server.EndPointOf("a")!;

        // The first connection is disposed (closed) without an answer; the next one is served.
        Assert.Equal(string.Empty, await ReadToEndAsync(endPoint, tolerateReset: true));
        Assert.Equal("second", await ReadToEndAsync(endPoint));
        Assert.Equal(0, await WaitForOpenAsync(server, 0));
    }

    [Fact]
    public async Task Stop_StopsAccepting_ThenWaitsForOpenConnections()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, async connection =>
        {
            entered.TrySetResult();
            await release.Task;
            await Answer(connection, "done");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);
        var endPoint = (IPEndPoint)server.EndPointOf("a")!;

        using var client = await TestSockets.ConnectAsync(endPoint);
        await entered.Task.WaitAsync(TestTimeouts.Short);
        Assert.Equal(1, server.OpenConnections);

        var stop = server.StopAsync(CancellationToken.None);

        // Not accepting any more: a new connection is refused once the listener is closed.
        await WaitUntilRefusedAsync(endPoint);
        Assert.False(stop.IsCompleted);

        release.SetResult();
        await stop.WaitAsync(TestTimeouts.Short);
        Assert.Equal("done", await ReadToEndAsync(client));
        Assert.Equal(0, server.OpenConnections);
    }

    [Fact]
    public async Task Stop_WhenTheTokenFires_AbortsTheConnectionsStillOpen()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, async connection =>
        {
            entered.TrySetResult();

            // Reads until the connection ends: only an abort ends it here (the client sends nothing).
            while (true)
            {
                var result = await connection.Transport.Input.ReadAsync();
                connection.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        using var client = await TestSockets.ConnectAsync((IPEndPoint)server.EndPointOf("a")!);
        await entered.Task.WaitAsync(TestTimeouts.Short);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await server.StopAsync(cts.Token).WaitAsync(TestTimeouts.Short);

        Assert.Equal(0, server.OpenConnections);
        var ex = await Assert.ThrowsAsync<SocketException>(async () =>
            await client.ReceiveAsync(new byte[16].AsMemory()).AsTask().WaitAsync(TestTimeouts.Short));
        Assert.Equal(SocketError.ConnectionReset, ex.SocketErrorCode);
    }

    [Fact]
    public async Task Start_WhenAnEndpointCannotBeBound_UnbindsTheOthersAndThrows()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(AnyPort);
        taken.Listen();

        var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("free", AnyPort, connection => Task.CompletedTask);
        server.Add("taken", taken.LocalEndPoint!, connection => Task.CompletedTask);
        var ex = await Assert.ThrowsAsync<IOException>(() => server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short));
        Assert.Equal($"Failed to bind listener taken to address {taken.LocalEndPoint}: address already in use.", ex.Message);
        Assert.IsType<AddressInUseException>(ex.InnerException);

        // The first endpoint was bound and then released: nothing listens on its configured address (port 0 stays).
        Assert.Equal(0, ((IPEndPoint)server.EndPointOf("free")!).Port);
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task Middleware_DoesNotSeeTheStartersAsyncLocals()
    {
        var local = new AsyncLocal<string?> { Value = "starter" };
        var seen = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, connection =>
        {
            seen.TrySetResult(local.Value);
            return Answer(connection, "ok");
        });
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);

        Assert.Equal("ok", await ReadToEndAsync((IPEndPoint)server.EndPointOf("a")!));
        Assert.Null(await seen.Task.WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public async Task Add_AfterStart_Throws()
    {
        await using var server = new ConnectionServer(_transport, NullLogger.Instance);
        server.Add("a", AnyPort, connection => Task.CompletedTask);
        await server.StartAsync(CancellationToken.None).WaitAsync(TestTimeouts.Short);
        Assert.Throws<InvalidOperationException>(() => server.Add("b", AnyPort, connection => Task.CompletedTask));
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.StartAsync(CancellationToken.None));
    }

    private static async Task Answer(ConnectionContext connection, string text)
    {
        await connection.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes(text));
        await connection.Transport.Output.CompleteAsync();
    }

    private static async Task<string> ReadToEndAsync(IPEndPoint endPoint, bool tolerateReset = false)
    {
        using var client = await TestSockets.ConnectAsync(endPoint);
        try
        {
            return await ReadToEndAsync(client);
        }
        catch (SocketException ex) when (tolerateReset && ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return string.Empty;
        }
    }

    private static async Task<string> ReadToEndAsync(Socket client)
    {
        var text = new StringBuilder();
        var buffer = new byte[256];
        while (true)
        {
            var n = await client.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(TestTimeouts.Short);
            if (n == 0)
            {
                return text.ToString();
            }

            text.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }
    }

    private static async Task<int> WaitForOpenAsync(ConnectionServer server, int expected)
    {
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (server.OpenConnections != expected && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        return server.OpenConnections;
    }

    private static async Task WaitUntilRefusedAsync(IPEndPoint endPoint)
    {
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (true)
        {
            try
            {
                using var probe = await TestSockets.ConnectAsync(endPoint);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, "the listener still accepted connections after StopAsync");
            await Task.Delay(10);
        }
    }
}

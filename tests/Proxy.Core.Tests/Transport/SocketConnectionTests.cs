using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;

namespace Proxy.Core.Tests.Transport;

/// <summary>The connection contract on our epoll event loops (the default on Linux).</summary>
public sealed class SocketConnectionTests() : SocketConnectionContractTests(ioThreads: 1);

/// <summary>The same contract on .NET's socket engine (<c>--io-threads 0</c>, and every platform but Linux).</summary>
public sealed class SocketConnectionDotNetEngineTests() : SocketConnectionContractTests(ioThreads: 0);

/// <summary>
/// The same contract for connections accepted by the event loop without a .NET socket (<c>accept4</c>; the sidecar's
/// explicit HTTP listeners), plus what is particular to them.
/// </summary>
public sealed class SocketConnectionWithoutSocketTests() : SocketConnectionContractTests(ioThreads: 1, withoutSocket: true)
{
    [Fact]
    public async Task ServedThroughPipes_NeverCreatesASocket_AndClosesWithFin()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        Assert.False(server.HasSocket);

        await client.SendAllAsync(Encoding.ASCII.GetBytes("question"));
        var input = server.Transport.Input;
        var read = await input.ReadAtLeastAsync(8).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("question", Encoding.ASCII.GetString(read.Buffer.ToArray()));
        input.AdvanceTo(read.Buffer.End);
        await server.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("answer")).AsTask().WaitAsync(TestTimeouts.Short);

        // Closed before the client reads anything: the descriptor's close must be a FIN (a .NET SafeSocketHandle
        // disposed on its own would reset), so the client still reads everything, then a clean end.
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
        Assert.False(server.HasSocket);
        Assert.Equal("answer", Encoding.ASCII.GetString(await client.ReadExactlyAsync(6)));
        Assert.Equal(SocketError.Success, await client.ReadUntilEndAsync());

        // After a FIN the client may still send (the closed end answers with RST only then); after an abortive close
        // the client's socket is already reset on loopback, and this send fails.
        Assert.Equal(1, client.Send([1]));
    }

    [Fact]
    public async Task Socket_AskedFor_IsTheSameConnection_AndClosesWithIt()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await client.SendAllAsync(Encoding.ASCII.GetBytes("peek"));

        // What the capture stages do before the transport starts: look at the socket itself.
        var socket = server.Socket;
        Assert.True(server.HasSocket);
        Assert.Same(socket, server.Socket);
        Assert.False(socket.Blocking);
        Assert.True(socket.NoDelay);
        Assert.Equal(client.LocalEndPoint, socket.RemoteEndPoint);
        var peeked = new byte[4];
        Assert.True(socket.Poll(TestTimeouts.Short, SelectMode.SelectRead));
        Assert.Equal(4, socket.Receive(peeked, SocketFlags.Peek));
        Assert.Equal("peek", Encoding.ASCII.GetString(peeked));

        // The transport then reads the same bytes (nothing was consumed) and closes both descriptors.
        var input = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("peek", Encoding.ASCII.GetString(input.Buffer.ToArray()));
        server.Transport.Input.AdvanceTo(input.Buffer.End);
        await server.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("bye")).AsTask().WaitAsync(TestTimeouts.Short);
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("bye", Encoding.ASCII.GetString(await client.ReadExactlyAsync(3)));
        Assert.Equal(SocketError.Success, await client.ReadUntilEndAsync());
        Assert.Throws<ObjectDisposedException>(() => socket.Available);
    }

    [Fact]
    public async Task Socket_AskedForAfterClose_IsAClosedSocket()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        server.Abort();
        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());

        var socket = server.Socket;
        Assert.Throws<ObjectDisposedException>(() => socket.Available);
    }

    [Fact]
    public async Task TryTakeOver_ClosingTheTakenSocket_EndsTheConnection()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        Assert.True(server.TryTakeOver(out var socket));
        await socket.SendAllAsync(Encoding.ASCII.GetBytes("spliced"));
        socket.Dispose();

        // The transport's own descriptor was released at the takeover: the new owner's close is the last one, so the
        // client sees the end (a descriptor left open would keep the connection up).
        Assert.Equal("spliced", Encoding.ASCII.GetString(await client.ReadToEndAsync()));
    }

    [Fact]
    public async Task WildcardListener_LocalEndPointIsTheConnectionsOwnAddress()
    {
        using var factory = CreateFactory();
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Any, 0));
        var port = ((IPEndPoint)listener.EndPoint).Port;
        using var client = await TestSockets.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        await using var server = (SocketConnection)(await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;

        Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), server.LocalEndPoint);
        Assert.Equal(client.LocalEndPoint, server.RemoteEndPoint);
        Assert.False(server.HasSocket);
    }

    [Fact]
    public async Task ManyQueuedConnections_AreAllAccepted_ThenAcceptWaits()
    {
        var clients = new List<Socket>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                clients.Add(await TestSockets.ConnectAsync((IPEndPoint)Listener.EndPoint));
            }

            var remotes = new HashSet<EndPoint>();
            for (var i = 0; i < clients.Count; i++)
            {
                await using var server = (SocketConnection)(await Listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
                Assert.True(remotes.Add(server.RemoteEndPoint!));
            }

            Assert.Equal(clients.Select(static c => c.LocalEndPoint!).ToHashSet(), remotes);

            // Queue drained (accept4 said EAGAIN): the next accept waits for the next connection.
            var next = Listener.AcceptAsync().AsTask();
            Assert.False(next.IsCompleted);
            using var late = await TestSockets.ConnectAsync((IPEndPoint)Listener.EndPoint);
            await using var lateServer = (SocketConnection)(await next.WaitAsync(TestTimeouts.Short))!;
            Assert.Equal(late.LocalEndPoint, lateServer.RemoteEndPoint);
        }
        finally
        {
            foreach (var c in clients)
            {
                c.Dispose();
            }
        }
    }

    [Fact]
    public async Task Unbind_EndsAPendingAccept()
    {
        using var factory = CreateFactory();
        var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var pending = listener.AcceptAsync().AsTask();
        await listener.UnbindAsync();
        Assert.Null(await pending.WaitAsync(TestTimeouts.Short));
        await listener.DisposeAsync();
    }
}

public abstract class SocketConnectionContractTests : IAsyncLifetime
{
    private sealed class AsyncDisposable(Func<Task> dispose) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await dispose();
    }

    private readonly SocketTransportOptions _options;
    private readonly SocketTransportFactory _factory;
    private readonly bool _withoutSocket;
    private IConnectionListener _listener = null!;

    protected SocketConnectionContractTests(int ioThreads, bool withoutSocket = false)
    {
        _options = new SocketTransportOptions { ReadBufferSize = 4096, IoThreads = ioThreads };
        _withoutSocket = withoutSocket;
        _factory = CreateFactory();
    }

    protected IConnectionListener Listener => _listener;

    protected SocketTransportFactory CreateFactory()
        => new(_options) { AcceptWithoutSocket = _withoutSocket ? static _ => true : null };

    public async Task InitializeAsync()
    {
        _listener = await _factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
    }

    public async Task DisposeAsync()
    {
        await _listener.DisposeAsync();
        _factory.Dispose();
    }

    protected async Task<(Socket Client, SocketConnection Server)> ConnectAsync()
    {
        var client = await TestSockets.ConnectAsync((IPEndPoint)_listener.EndPoint);
        var server = (SocketConnection)(await _listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
        return (client, server);
    }

    protected static async Task<byte[]> ReadInputToEndAsync(PipeReader input)
    {
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
            if (result.IsCompleted)
            {
                var bytes = result.Buffer.ToArray();
                input.AdvanceTo(result.Buffer.End);
                return bytes;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    [Fact]
    public async Task Input_PeerSendsFin_CompletesNormallyAndOutputStillSends()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        await client.SendAllAsync(Encoding.ASCII.GetBytes("question"));
        client.Shutdown(SocketShutdown.Send);

        var received = await ReadInputToEndAsync(server.Transport.Input);
        Assert.Equal("question", Encoding.ASCII.GetString(received));

        await server.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("answer")).AsTask().WaitAsync(TestTimeouts.Short);
        await server.Transport.Output.CompleteAsync();

        var answer = await client.ReadToEndAsync();
        Assert.Equal("answer", Encoding.ASCII.GetString(answer));
    }

    [Fact]
    public async Task Output_CompletedNormally_SendsPendingBytesThenFinAndKeepsReceiving()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        // More than the pipe's pause threshold in several blocks, to exercise multi-segment sends.
        var payload = new byte[300_000];
        new Random(7).NextBytes(payload);
        var clientRead = client.ReadToEndAsync();
        await server.Transport.Output.WriteAsync(payload).AsTask().WaitAsync(TestTimeouts.Short);
        await server.Transport.Output.CompleteAsync();

        Assert.Equal(payload, await clientRead);

        // Our FIN went out; the other direction is still open.
        await client.SendAllAsync(Encoding.ASCII.GetBytes("late"));
        client.Shutdown(SocketShutdown.Send);
        var received = await ReadInputToEndAsync(server.Transport.Input);
        Assert.Equal("late", Encoding.ASCII.GetString(received));
    }

    [Fact]
    public async Task ConnectionClosed_BothDirectionsDone_FiresWithoutDispose()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.ConnectionClosed.Register(() => closed.TrySetResult());

        await server.Transport.Output.CompleteAsync();
        Assert.Empty(await client.ReadToEndAsync());
        client.Shutdown(SocketShutdown.Send);
        Assert.Empty(await ReadInputToEndAsync(server.Transport.Input));

        await closed.Task.WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task Input_PeerResets_CompletesWithConnectionResetException()
    {
        var (client, server) = await ConnectAsync();
        await using var _ = server;
        var input = server.Transport.Input;
        await client.SendAllAsync(new byte[] { 1, 2, 3 });
        var first = await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        input.AdvanceTo(first.Buffer.End);

        client.Reset();

        await Assert.ThrowsAsync<ConnectionResetException>(async () =>
        {
            while (true)
            {
                var result = await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
                input.AdvanceTo(result.Buffer.End);
                Assert.False(result.IsCompleted, "a reset must not look like a clean FIN");
            }
        });
    }

    [Fact]
    public async Task Abort_PeerSeesReset()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;
        await server.Transport.Output.WriteAsync(new byte[] { 42 }).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(new byte[] { 42 }, await client.ReadExactlyAsync(1));

        server.Abort();

        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());
    }

    [Fact]
    public async Task Abort_AfterStart_FiresConnectionClosedAndCompletesInputWithAbortReason()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.ConnectionClosed.Register(() => closed.TrySetResult());
        var input = server.Transport.Input;

        server.Abort(new ConnectionAbortedException("test abort"));

        await closed.Task.WaitAsync(TestTimeouts.Short);
        var ex = await Assert.ThrowsAsync<ConnectionAbortedException>(async () => await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short));
        Assert.Equal("test abort", ex.Message);
    }

    [Fact]
    public async Task Output_CompletedWithException_PeerSeesReset()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        await server.Transport.Output.CompleteAsync(new InvalidOperationException("boom"));

        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());
    }

    [Fact]
    public async Task Abort_BeforeStart_PeerSeesResetAndTakeOverFails()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        server.Abort();

        Assert.Equal(SocketError.ConnectionReset, await client.ReadUntilEndAsync());
        Assert.False(server.TryTakeOver(out var _));
    }

    [Fact]
    public async Task TryTakeOver_BeforeStart_HandsOverSocketThatTransportNeverCloses()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await client.SendAllAsync(Encoding.ASCII.GetBytes("raw"));

        var feature = server.Features.Get<ITakeOverSocketFeature>();
        Assert.NotNull(feature);
        Assert.True(feature.CanTakeOver);
        Assert.True(feature.TryTakeOver(out var socket));
        using var __ = socket;
        Assert.False(feature.CanTakeOver);
        Assert.False(server.IsStarted);
        Assert.Throws<InvalidOperationException>(() => server.Transport);

        // Disposing and aborting the connection must leave the socket alone.
        server.Abort();
        await server.DisposeAsync();

        // Nothing was read by the transport: the bytes are all still there.
        var buffer = new byte[3];
        Assert.Equal(3, await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(TestTimeouts.Short));
        Assert.Equal("raw", Encoding.ASCII.GetString(buffer));
        await socket.SendAllAsync(Encoding.ASCII.GetBytes("ok"));
        Assert.Equal("ok", Encoding.ASCII.GetString(await client.ReadExactlyAsync(2)));
    }

    [Fact]
    public async Task TryTakeOver_AfterTransportUsed_ReturnsFalse()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        Assert.NotNull(server.Transport);

        Assert.True(server.IsStarted);
        Assert.False(server.Features.Get<ITakeOverSocketFeature>()!.CanTakeOver);
        Assert.False(server.Features.Get<ITakeOverSocketFeature>()!.TryTakeOver(out var _));
    }

    [Fact]
    public async Task DisposeAsync_AfterWrite_SendsPendingBytesThenFin()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.ConnectionClosed.Register(() => closed.TrySetResult());

        await server.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("bye")).AsTask().WaitAsync(TestTimeouts.Short);
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal("bye", Encoding.ASCII.GetString(await client.ReadToEndAsync()));
        await closed.Task.WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task Features_ExposeEndPointsSocketAndId()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        Assert.Equal(client.LocalEndPoint, server.RemoteEndPoint);
        Assert.Equal(_listener.EndPoint, server.LocalEndPoint);
        Assert.Same(server.Socket, server.Features.Get<IConnectionSocketFeature>()!.Socket);
        Assert.Same(server, server.Features.Get<IConnectionLifetimeFeature>());
        Assert.False(string.IsNullOrEmpty(server.Features.Get<IConnectionIdFeature>()!.ConnectionId));
        Assert.False(server.IsStarted);
    }

    [Fact]
    public async Task Transport_IdleConnectionWithWaitForData_HoldsNoBlock()
    {
        using var factory = CreateFactory();
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var client = await TestSockets.ConnectAsync((IPEndPoint)listener.EndPoint);
        await using var server = (SocketConnection)(await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;

        // One round trip, fully consumed, then idle.
        await client.SendAllAsync(new byte[] { 1 });
        var result = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        server.Transport.Input.AdvanceTo(result.Buffer.End);
        await client.SendAllAsync(new byte[] { 2 });
        result = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        server.Transport.Input.AdvanceTo(result.Buffer.End);

        // The consumed block went back to the pool while the receive loop waits with a zero-byte read.
        Assert.True(factory.Pool.PooledCount >= 1);
    }

    [Fact]
    public async Task Output_PeerReadsLate_WaitsForSpaceThenSendsEverything()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;

        // A send loop that never wakes after EAGAIN would keep a graceful dispose waiting: reset at the end instead.
        await using var __ = new AsyncDisposable(async () =>
        {
            server.Abort();
            await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
        });

        // Far more than the kernel's send and receive buffers hold: the send loop must see EAGAIN, wait for the
        // socket to become writable and go on, while the application's flushes wait (backpressure).
        const long Total = 24L * 1024 * 1024;
        var writer = Task.Run(async () =>
        {
            var block = new byte[50_000];
            var rng = new Random(11);
            var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            for (long sent = 0; sent < Total; sent += block.Length)
            {
                rng.NextBytes(block);
                var n = (int)Math.Min(block.Length, Total - sent);
                hash.AppendData(block, 0, n);
                var flush = await server.Transport.Output.WriteAsync(block.AsMemory(0, n));
                Assert.False(flush.IsCompleted);
            }

            await server.Transport.Output.CompleteAsync();
            return hash.GetHashAndReset();
        });

        // Let the writer fill every buffer before the client reads a byte.
        await Task.Delay(200);
        Assert.False(writer.IsCompleted);

        var (count, received) = await client.ReceiveAndHashAsync().WaitAsync(TestTimeouts.Bulk);
        Assert.Equal(Total, count);
        Assert.Equal(await writer.WaitAsync(TestTimeouts.Short), received);
    }

    [Fact]
    public async Task Input_ManyConnectionsAtOnce_EachGetsExactlyItsBytes()
    {
        // Many sockets share one event loop; each must be woken for its own bytes only, and closes in between must
        // not disturb the others (stale events are dropped by the slot generation).
        const int Connections = 64;
        var pairs = new List<(Socket Client, SocketConnection Server)>();
        try
        {
            for (var i = 0; i < Connections; i++)
            {
                pairs.Add(await ConnectAsync());
            }

            var tasks = pairs.Select(async (pair, i) =>
            {
                var payload = Encoding.ASCII.GetBytes($"connection {i} says " + new string((char)('a' + (i % 26)), 5000 + i));
                var echo = Task.Run(async () =>
                {
                    var input = pair.Server.Transport.Input;
                    var output = pair.Server.Transport.Output;
                    while (true)
                    {
                        var result = await input.ReadAsync();
                        foreach (var memory in result.Buffer)
                        {
                            await output.WriteAsync(memory);
                        }

                        input.AdvanceTo(result.Buffer.End);
                        if (result.IsCompleted)
                        {
                            await output.CompleteAsync();
                            return;
                        }
                    }
                });

                var reading = pair.Client.ReadToEndAsync(TestTimeouts.Bulk);
                await pair.Client.SendAllAsync(payload);
                pair.Client.Shutdown(SocketShutdown.Send);
                Assert.Equal(payload, await reading);
                await echo.WaitAsync(TestTimeouts.Short);

                if (i % 2 == 0)
                {
                    // Half of them close early while the others still run.
                    await pair.Server.DisposeAsync();
                }
            });

            await Task.WhenAll(tasks).WaitAsync(TestTimeouts.Bulk);
        }
        finally
        {
            foreach (var (client, server) in pairs)
            {
                client.Dispose();
                await server.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Input_BytesAndFinArriveTogether_ReadsBothWithoutAnotherEvent()
    {
        var (client, server) = await ConnectAsync();
        using var _ = client;
        await using var __ = server;

        // Data and FIN are queued before the transport starts: one readiness report covers both.
        await client.SendAllAsync(Encoding.ASCII.GetBytes("all at once"));
        client.Shutdown(SocketShutdown.Send);
        await Task.Delay(50);

        var received = await ReadInputToEndAsync(server.Transport.Input);
        Assert.Equal("all at once", Encoding.ASCII.GetString(received));
    }
}

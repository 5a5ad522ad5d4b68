using System.Net.Sockets;
using System.Security.Cryptography;
using Proxy.Core.Tcp;
using Proxy.Core.Tcp.Splice;
using Xunit.Abstractions;

namespace Proxy.Core.Tests.Tcp.Splice;

public sealed class SpliceForwarderLoadTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = LoopbackConnections.Timeout;

    [Fact]
    public async Task ForwardAsync_SlowReader_WriterBlocksWithBoundedBytesInFlightThenAllArrive()
    {
        const long total = 128L * 1024 * 1024;
        using var forwarder = new SpliceForwarder();
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        // Small fixed buffers at the ends (no autotuning) so what is in flight is mostly the proxy's share.
        c.Client.SendBufferSize = 64 * 1024;
        c.Server.ReceiveBufferSize = 64 * 1024;
        var observer = new CountingObserver();
        Task<TcpForwardResult> forward = forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, new TcpForwardOptions(), observer, CancellationToken.None).AsTask();

        long written = 0;
        Task<byte[]> writer = Task.Run(async () =>
        {
            var random = new Random(7);
            byte[] chunk = new byte[64 * 1024];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (long left = total; left > 0; left -= chunk.Length)
            {
                random.NextBytes(chunk);
                hash.AppendData(chunk);
                for (int sent = 0; sent < chunk.Length;)
                {
                    sent += await c.Client.SendAsync(chunk.AsMemory(sent), SocketFlags.None).AsTask().WaitAsync(Timeout).ConfigureAwait(false);
                }

                Interlocked.Add(ref written, chunk.Length);
            }

            c.Client.Shutdown(SocketShutdown.Send);
            return hash.GetHashAndReset();
        });

        // The server reads nothing: the writer must stall once the kernel buffers and the pipe are full.
        long stalledAt = await WaitUntilStalledAsync(() => Interlocked.Read(ref written));
        long forwardedAtStall = observer.ToUpstream;
        output.WriteLine($"writer stalled after {stalledAt} bytes, {forwardedAtStall} of them forwarded upstream");
        Assert.InRange(stalledAt, 1, 64L * 1024 * 1024);
        Assert.False(writer.IsCompleted);
        Assert.InRange(forwardedAtStall, 1, stalledAt);

        (long length, byte[] received) = await LoopbackConnections.ReceiveToEndAsync(c.Server);
        c.Server.Shutdown(SocketShutdown.Send);

        Assert.Equal(total, length);
        Assert.Equal(await writer.WaitAsync(Timeout), received);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, total, 0), await forward.WaitAsync(Timeout));
    }

    [Fact]
    public async Task ForwardAsync_200ConcurrentSessionsOnTwoReactors_AllEchoesExact()
    {
        const int sessions = 200;
        using var forwarder = new SpliceForwarder(new SpliceForwarderOptions { ReactorCount = 2, MaxPipeCapacity = 0 });
        var connections = new LoopbackConnections[sessions];
        for (int i = 0; i < sessions; i++)
        {
            connections[i] = await LoopbackConnections.CreateAsync();
        }

        try
        {
            var runs = new Task[sessions];
            var forwards = new Task<TcpForwardResult>[sessions];
            for (int i = 0; i < sessions; i++)
            {
                LoopbackConnections c = connections[i];
                forwards[i] = forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, new TcpForwardOptions(), null, CancellationToken.None).AsTask();
                int size = 1 + (i * 997 % (32 * 1024));
                runs[i] = Task.Run(() => EchoOnceAsync(c, size, seed: i));
            }

            await Task.WhenAll(runs).WaitAsync(Timeout);
            TcpForwardResult[] results = await Task.WhenAll(forwards).WaitAsync(Timeout);
            for (int i = 0; i < sessions; i++)
            {
                int size = 1 + (i * 997 % (32 * 1024));
                Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, size, size), results[i]);
            }

            Assert.Equal(0, forwarder.ActiveSessions);
        }
        finally
        {
            foreach (LoopbackConnections c in connections)
            {
                c.Dispose();
            }
        }
    }

    /// <summary>Client sends, half-closes; the server echoes everything back after EOF and closes.</summary>
    private static async Task EchoOnceAsync(LoopbackConnections c, int size, int seed)
    {
        byte[] payload = new byte[size];
        new Random(seed).NextBytes(payload);
        Task server = Task.Run(async () =>
        {
            byte[] request = await LoopbackConnections.ReceiveAllAsync(c.Server).ConfigureAwait(false);
            await c.Server.SendAsync(request, SocketFlags.None).WaitAsync(Timeout).ConfigureAwait(false);
            c.Server.Shutdown(SocketShutdown.Send);
        });

        await c.Client.SendAsync(payload, SocketFlags.None).WaitAsync(Timeout).ConfigureAwait(false);
        c.Client.Shutdown(SocketShutdown.Send);
        byte[] echoed = await LoopbackConnections.ReceiveAllAsync(c.Client).ConfigureAwait(false);
        await server.WaitAsync(Timeout).ConfigureAwait(false);
        Assert.Equal(payload, echoed);
    }

    /// <summary>Polls a progress counter until it stops moving for half a second; returns its value then.</summary>
    private static async Task<long> WaitUntilStalledAsync(Func<long> progress)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long previous = -1;
        while (clock.Elapsed < Timeout)
        {
            await Task.Delay(500);
            long now = progress();
            if (now > 0 && now == previous)
            {
                return now;
            }

            previous = now;
        }

        throw new TimeoutException("The writer never stalled.");
    }
}

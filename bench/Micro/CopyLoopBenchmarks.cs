using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Proxy.Core.Tcp;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Bench.Micro;

/// <summary>
/// Opaque TCP forwarding cost: <see cref="MegaBytes"/> MiB go client -> proxy -> server over loopback, through
/// <list type="bullet">
/// <item><c>Direct</c>: no proxy (the client and server cost, subtract it from the others);</item>
/// <item><c>SocketCopy64K</c>: a 64 KiB Socket Receive/SendAsync loop per direction (the portable raw path);</item>
/// <item><c>SpliceReactor</c>: <see cref="SpliceForwarder"/> (splice(2) through pipes, one epoll reactor thread);</item>
/// <item><c>SpliceThreadPerDirection</c>: blocking splice(2), one dedicated thread per direction (the experiment
/// the reactor was measured against; not shipped).</item>
/// </list>
/// Each run also prints the process CPU time (user+sys, <see cref="Process.TotalProcessorTime"/>) per GiB moved,
/// client and server included; the proxy's share is the difference to <c>Direct</c>.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class CopyLoopBenchmarks
{
    private const int ChunkSize = 64 * 1024;
    private static readonly TcpForwardOptions Options = new();

    private byte[] _payload = [];
    private SpliceForwarder? _splice;
    private TimeSpan _cpuAtStart;
    private long _bytesMoved;

    [Params(64)]
    public int MegaBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _payload = new byte[ChunkSize];
        new Random(42).NextBytes(_payload);
        _splice = new SpliceForwarder();
        _cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime;
        _bytesMoved = 0;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _splice?.Dispose();
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - _cpuAtStart).TotalSeconds;
        double gib = _bytesMoved / (1024.0 * 1024 * 1024);
        Console.WriteLine($"// CPU per GiB (process user+sys, client+server included): {cpu / gib:F3} s over {gib:F2} GiB");
    }

    [Benchmark(Baseline = true)]
    public async Task Direct()
    {
        (Socket client, Socket server) = await ConnectedPairAsync().ConfigureAwait(false);
        using (client)
        using (server)
        {
            await TransferAsync(client, server).ConfigureAwait(false);
        }
    }

    [Benchmark]
    public async Task SocketCopy64K()
    {
        (Socket client, Socket proxyDown, Socket proxyUp, Socket server) = await ChainAsync().ConfigureAwait(false);
        using (client)
        using (server)
        using (proxyDown)
        using (proxyUp)
        {
            Task up = CopyAsync(proxyDown, proxyUp);
            Task down = CopyAsync(proxyUp, proxyDown);
            await TransferAsync(client, server).ConfigureAwait(false);
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
    }

    [Benchmark]
    public async Task SpliceReactor()
    {
        (Socket client, Socket proxyDown, Socket proxyUp, Socket server) = await ChainAsync().ConfigureAwait(false);
        using (client)
        using (server)
        {
            ValueTask<TcpForwardResult> forward = _splice!.ForwardAsync(proxyDown, proxyUp, Options, null, CancellationToken.None);
            await TransferAsync(client, server).ConfigureAwait(false);
            await forward.ConfigureAwait(false);
        }
    }

    [Benchmark]
    public async Task SpliceThreadPerDirection()
    {
        (Socket client, Socket proxyDown, Socket proxyUp, Socket server) = await ChainAsync().ConfigureAwait(false);
        using (client)
        using (server)
        using (proxyDown)
        using (proxyUp)
        {
            Task up = BlockingSplice.StartAsync(proxyDown, proxyUp);
            Task down = BlockingSplice.StartAsync(proxyUp, proxyDown);
            await TransferAsync(client, server).ConfigureAwait(false);
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
    }

    /// <summary>Client sends MegaBytes MiB and half-closes; the server reads to EOF and half-closes back.</summary>
    private async Task TransferAsync(Socket client, Socket server)
    {
        long total = (long)MegaBytes * 1024 * 1024;
        Task<long> receive = DrainAsync(server);
        for (long sent = 0; sent < total;)
        {
            sent += await client.SendAsync(_payload.AsMemory(0, (int)Math.Min(ChunkSize, total - sent)), SocketFlags.None).ConfigureAwait(false);
        }

        client.Shutdown(SocketShutdown.Send);
        long received = await receive.ConfigureAwait(false);
        if (received != total)
        {
            throw new InvalidOperationException($"received {received} of {total} bytes");
        }

        server.Shutdown(SocketShutdown.Send);
        await DrainAsync(client).ConfigureAwait(false);
        _bytesMoved += total;
    }

    private static async Task<long> DrainAsync(Socket socket)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            long total = 0;
            int n;
            while ((n = await socket.ReceiveAsync(buffer.AsMemory(0, ChunkSize), SocketFlags.None).ConfigureAwait(false)) > 0)
            {
                total += n;
            }

            return total;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The portable raw path: 64 KiB pooled buffer, Receive then Send until EOF, then pass the FIN on.</summary>
    private static async Task CopyAsync(Socket source, Socket destination)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            int n;
            while ((n = await source.ReceiveAsync(buffer.AsMemory(0, ChunkSize), SocketFlags.None).ConfigureAwait(false)) > 0)
            {
                for (int sent = 0; sent < n;)
                {
                    sent += await destination.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None).ConfigureAwait(false);
                }
            }

            destination.Shutdown(SocketShutdown.Send);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task<(Socket Client, Socket ProxyDown, Socket ProxyUp, Socket Server)> ChainAsync()
    {
        (Socket client, Socket proxyDown) = await ConnectedPairAsync().ConfigureAwait(false);
        (Socket proxyUp, Socket server) = await ConnectedPairAsync().ConfigureAwait(false);
        return (client, proxyDown, proxyUp, server);
    }

    private static async Task<(Socket Connected, Socket Accepted)> ConnectedPairAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var connecting = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Task<Socket> accept = listener.AcceptSocketAsync();
        await connecting.ConnectAsync((IPEndPoint)listener.LocalEndpoint).ConfigureAwait(false);
        Socket accepted = await accept.ConfigureAwait(false);
        accepted.NoDelay = true;
        return (connecting, accepted);
    }

    /// <summary>The measured alternative to the reactor: a blocking splice loop on a dedicated thread per direction.</summary>
    public static class BlockingSplice
    {
        public static Task StartAsync(Socket source, Socket destination)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    Run((int)source.SafeHandle.DangerousGetHandle(), (int)destination.SafeHandle.DangerousGetHandle());
                    done.SetResult();
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            })
            { IsBackground = true };
            thread.Start();
            return done.Task;
        }

        private static unsafe void Run(int sourceFd, int destinationFd)
        {
            ClearNonBlocking(sourceFd);
            ClearNonBlocking(destinationFd);
            int* fds = stackalloc int[2];
            if (SpliceNative.Pipe2(fds, SpliceNative.O_CLOEXEC) != 0)
            {
                throw new IOException("pipe2 failed");
            }

            try
            {
                _ = SpliceNative.Fcntl(fds[1], SpliceNative.F_SETPIPE_SZ, 1024 * 1024);
                while (true)
                {
                    nint n = SpliceNative.Splice(sourceFd, 0, fds[1], 0, 1024 * 1024, SpliceNative.SPLICE_F_MOVE);
                    if (n <= 0)
                    {
                        break;
                    }

                    while (n > 0)
                    {
                        nint m = SpliceNative.Splice(fds[0], 0, destinationFd, 0, (nuint)n, SpliceNative.SPLICE_F_MOVE);
                        if (m <= 0)
                        {
                            throw new IOException("splice out failed");
                        }

                        n -= m;
                    }
                }

                _ = SpliceNative.Shutdown(destinationFd, SpliceNative.SHUT_WR);
            }
            finally
            {
                _ = SpliceNative.Close(fds[0]);
                _ = SpliceNative.Close(fds[1]);
            }
        }

        private static void ClearNonBlocking(int fd)
        {
            int flags = SpliceNative.Fcntl(fd, SpliceNative.F_GETFL, 0);
            _ = SpliceNative.Fcntl(fd, SpliceNative.F_SETFL, flags & ~SpliceNative.O_NONBLOCK);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Proxy.Core.Tcp;

namespace Proxy.Core.Tests.Tcp.Splice;

/// <summary>
/// client ──► [proxyDownstream | proxyUpstream] ──► server, all real TCP sockets on 127.0.0.1 port 0.
/// The proxy-side sockets are never read: one is accepted, the other connected asynchronously (as a real
/// outbound connection would be), which also makes .NET register it with its own epoll engine.
/// </summary>
internal sealed class LoopbackConnections : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private LoopbackConnections(Socket client, Socket proxyDownstream, Socket proxyUpstream, Socket server)
    {
        Client = client;
        ProxyDownstream = proxyDownstream;
        ProxyUpstream = proxyUpstream;
        Server = server;
    }

    public Socket Client { get; }

    public Socket ProxyDownstream { get; }

    public Socket ProxyUpstream { get; }

    public Socket Server { get; }

    public static async Task<LoopbackConnections> CreateAsync()
    {
        (Socket client, Socket proxyDownstream) = await ConnectedPairAsync().ConfigureAwait(false);
        (Socket proxyUpstream, Socket server) = await ConnectedPairAsync().ConfigureAwait(false);
        return new LoopbackConnections(client, proxyDownstream, proxyUpstream, server);
    }

    /// <summary>A connected pair: (connecting side, accepted side).</summary>
    public static async Task<(Socket Connected, Socket Accepted)> ConnectedPairAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var connecting = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Task<Socket> accept = listener.AcceptSocketAsync();
        await connecting.ConnectAsync((IPEndPoint)listener.LocalEndpoint).WaitAsync(Timeout).ConfigureAwait(false);
        Socket accepted = await accept.WaitAsync(Timeout).ConfigureAwait(false);
        accepted.NoDelay = true;
        return (connecting, accepted);
    }

    /// <summary>Sends <paramref name="length"/> pseudo-random bytes (from <paramref name="seed"/>) and returns their SHA-256.</summary>
    public static async Task<byte[]> SendPatternAsync(Socket socket, long length, int seed, bool shutdownAfter)
    {
        var random = new Random(seed);
        byte[] chunk = new byte[256 * 1024];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long left = length;
        while (left > 0)
        {
            int size = (int)Math.Min(chunk.Length, left);
            random.NextBytes(chunk.AsSpan(0, size));
            hash.AppendData(chunk, 0, size);
            int sent = 0;
            while (sent < size)
            {
                sent += await socket.SendAsync(chunk.AsMemory(sent, size - sent)).AsTask().WaitAsync(Timeout).ConfigureAwait(false);
            }

            left -= size;
        }

        if (shutdownAfter)
        {
            socket.Shutdown(SocketShutdown.Send);
        }

        return hash.GetHashAndReset();
    }

    /// <summary>Reads until EOF; returns the count and SHA-256 of what arrived.</summary>
    public static async Task<(long Length, byte[] Hash)> ReceiveToEndAsync(Socket socket)
    {
        byte[] buffer = new byte[256 * 1024];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long total = 0;
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout).ConfigureAwait(false);
            if (n == 0)
            {
                return (total, hash.GetHashAndReset());
            }

            hash.AppendData(buffer, 0, n);
            total += n;
        }
    }

    /// <summary>Reads until EOF and returns the bytes (small transfers only).</summary>
    public static async Task<byte[]> ReceiveAllAsync(Socket socket)
    {
        using var collected = new MemoryStream();
        byte[] buffer = new byte[16 * 1024];
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout).ConfigureAwait(false);
            if (n == 0)
            {
                return collected.ToArray();
            }

            collected.Write(buffer, 0, n);
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes.</summary>
    public static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int count)
    {
        byte[] buffer = new byte[count];
        int read = 0;
        while (read < count)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read)).AsTask().WaitAsync(Timeout).ConfigureAwait(false);
            if (n == 0)
            {
                throw new EndOfStreamException($"EOF after {read} of {count} bytes.");
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>Reads until the peer's reset surfaces; returns the socket error seen (Success when EOF came instead).</summary>
    public static async Task<SocketError> ReceiveUntilErrorAsync(Socket socket)
    {
        byte[] buffer = new byte[16 * 1024];
        try
        {
            while (await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout).ConfigureAwait(false) > 0)
            {
            }

            return SocketError.Success;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode;
        }
    }

    /// <summary>Closes with RST instead of FIN.</summary>
    public static void Reset(Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Dispose();
    }

    public void Dispose()
    {
        Client.Dispose();
        ProxyDownstream.Dispose();
        ProxyUpstream.Dispose();
        Server.Dispose();
    }
}

/// <summary>Counts what the forwarder reports, thread-safe.</summary>
internal sealed class CountingObserver : IForwardObserver
{
    private long _toUpstream;
    private long _toDownstream;
    private long _calls;

    public long ToUpstream => Interlocked.Read(ref _toUpstream);

    public long ToDownstream => Interlocked.Read(ref _toDownstream);

    public long Calls => Interlocked.Read(ref _calls);

    public void OnBytesToUpstream(int count)
    {
        Interlocked.Add(ref _toUpstream, count);
        Interlocked.Increment(ref _calls);
    }

    public void OnBytesToDownstream(int count)
    {
        Interlocked.Add(ref _toDownstream, count);
        Interlocked.Increment(ref _calls);
    }
}

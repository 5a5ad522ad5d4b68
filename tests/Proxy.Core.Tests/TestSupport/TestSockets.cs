using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Proxy.Core.Tests.TestSupport;

/// <summary>A plain listening socket on 127.0.0.1:0 (the upstream in proxy tests).</summary>
internal sealed class TestListener : IDisposable
{
    private readonly Socket _socket;

    private TestListener(Socket socket)
    {
        _socket = socket;
        EndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPEndPoint EndPoint { get; }

    public static TestListener Start(int backlog = 64)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(backlog);
        return new TestListener(socket);
    }

    public Task<Socket> AcceptAsync() => _socket.AcceptAsync().WaitAsync(TestTimeouts.Short);

    public void Dispose() => _socket.Dispose();
}

internal static class TestSockets
{
    public static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(TestTimeouts.Short);
        return socket;
    }

    /// <summary>A port that refuses connections (see <see cref="Proxy.Testing.RefusingPort"/>).</summary>
    public static IPEndPoint UnusedEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }

    public static async Task SendAllAsync(this Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var sent = await socket.SendAsync(data).AsTask().WaitAsync(TestTimeouts.Short);
            data = data[sent..];
        }
    }

    /// <summary>Reads until FIN; throws <see cref="SocketException"/> on a reset.</summary>
    public static async Task<byte[]> ReadToEndAsync(this Socket socket, TimeSpan? timeout = null)
    {
        using var stream = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(timeout ?? TestTimeouts.Short);
            if (n == 0)
            {
                return stream.ToArray();
            }

            stream.Write(buffer, 0, n);
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes.</summary>
    public static async Task<byte[]> ReadExactlyAsync(this Socket socket, int count)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read)).AsTask().WaitAsync(TestTimeouts.Short);
            if (n == 0)
            {
                throw new EndOfStreamException($"EOF after {read} of {count} bytes.");
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>Reads (discarding data) until the connection ends: Success for FIN, else the socket error (ConnectionReset for RST).</summary>
    public static async Task<SocketError> ReadUntilEndAsync(this Socket socket, TimeSpan? timeout = null)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(timeout ?? TestTimeouts.Short) != 0)
            {
            }

            return SocketError.Success;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
        }
    }

    /// <summary>
    /// Connects and reads until the connection ends (see <see cref="ReadUntilEndAsync"/>). A reset that
    /// arrives before the client's connect call has even returned counts as a reset, not a test error:
    /// on loopback the proxy can accept and reset faster than the client's epoll wakes up.
    /// </summary>
    public static async Task<SocketError> ConnectAndReadUntilEndAsync(IPEndPoint endPoint)
    {
        Socket socket;
        try
        {
            socket = await ConnectAsync(endPoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return SocketError.ConnectionReset;
        }

        using (socket)
        {
            return await socket.ReadUntilEndAsync();
        }
    }

    /// <summary>Closes with SO_LINGER 0: the peer sees RST.</summary>
    public static void Reset(this Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Dispose();
    }

    /// <summary>Sends <paramref name="total"/> pseudo-random bytes (seeded) and returns their SHA-256.</summary>
    public static async Task<byte[]> SendPatternAsync(this Socket socket, long total, int seed)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var chunk = new byte[64 * 1024];
        for (long sent = 0; sent < total;)
        {
            var size = (int)Math.Min(chunk.Length, total - sent);
            random.NextBytes(chunk.AsSpan(0, size));
            hash.AppendData(chunk, 0, size);
            var data = chunk.AsMemory(0, size);
            while (!data.IsEmpty)
            {
                var n = await socket.SendAsync(data).AsTask().WaitAsync(TestTimeouts.Bulk);
                data = data[n..];
            }

            sent += size;
        }

        return hash.GetHashAndReset();
    }

    /// <summary>Reads until FIN and returns (byte count, SHA-256).</summary>
    public static async Task<(long Count, byte[] Hash)> ReceiveAndHashAsync(this Socket socket)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long count = 0;
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(TestTimeouts.Bulk);
            if (n == 0)
            {
                return (count, hash.GetHashAndReset());
            }

            hash.AppendData(buffer, 0, n);
            count += n;
        }
    }
}

using System.Net;
using System.Net.Sockets;

namespace Proxy.Core.Tests.TestSupport;

/// <summary>
/// A loopback listener that never answers new connects: backlog 0, accept queue filled by one
/// connection that is never accepted. Linux then drops further SYNs (the accept queue is full), so a
/// connect hangs in SYN_SENT until the caller's timeout, all without leaving 127.0.0.1.
/// </summary>
internal sealed class FullBacklogListener : IDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _fillers = [];

    private FullBacklogListener(Socket listener)
    {
        _listener = listener;
        EndPoint = (IPEndPoint)listener.LocalEndPoint!;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<FullBacklogListener> StartAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(0);
        var full = new FullBacklogListener(socket);

        // Fill until a connect does not complete promptly (one is enough on Linux; a few to be sure).
        for (var i = 0; i < 8; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            full._fillers.Add(filler);
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await filler.ConnectAsync(full.EndPoint, cts.Token);
            }
            catch (OperationCanceledException)
            {
                return full;
            }
        }

        full.Dispose();
        throw new InvalidOperationException("Could not fill the accept queue of a backlog-0 listener.");
    }

    public void Dispose()
    {
        foreach (var filler in _fillers)
        {
            filler.Dispose();
        }

        _listener.Dispose();
    }
}

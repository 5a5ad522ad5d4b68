using System.Net;
using System.Net.Sockets;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// A server-speaks-first TCP target on 127.0.0.1 port 0: every accepted connection gets one byte, then is
/// closed. Start-up timing uses it to see the first byte that went through a peer.
/// </summary>
internal sealed class BannerServer : IAsyncDisposable
{
    private static readonly byte[] Banner = "B"u8.ToArray();

    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    public BannerServer()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(128);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint { get; }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        try
        {
            await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (OperationCanceledException)
        {
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var connection = await _listener.AcceptAsync(_stop.Token);
            try
            {
                await connection.SendAsync(Banner, SocketFlags.None, _stop.Token);
                connection.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // The peer's upstream connection may be closed under us; the prober retries.
            }
            finally
            {
                connection.Dispose();
            }
        }
    }
}

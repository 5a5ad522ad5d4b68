using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Proxy.Core.Transport;

/// <summary>A bound listening socket that yields <see cref="SocketConnection"/>s (not yet started).</summary>
public sealed partial class SocketConnectionListener : IConnectionListener
{
    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(50);

    private readonly Socket _listenSocket;
    private readonly SocketConnectionSettings _settings;

    internal SocketConnectionListener(Socket listenSocket, SocketConnectionSettings settings)
    {
        _listenSocket = listenSocket;
        _settings = settings;
        EndPoint = listenSocket.LocalEndPoint!;
    }

    /// <summary>The bound endpoint (with the real port when bound to port 0).</summary>
    public EndPoint EndPoint { get; }

    /// <summary>Accepts the next connection; null once the listener is unbound.</summary>
    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _listenSocket.AcceptAsync(cancellationToken);
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.OperationAborted)
            {
                return null;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
            {
                // The client gave up before we accepted it: nothing to do.
                Log.AcceptReset(_settings.Logger, EndPoint, ex.SocketErrorCode);
                continue;
            }
            catch (SocketException ex)
            {
                // Out of file descriptors or memory: stopping the listener for good would be worse, and
                // retrying at once would spin. Back off briefly; connections already open may free resources.
                Log.AcceptFailed(_settings.Logger, EndPoint, ex.SocketErrorCode, ex.Message);
                await Task.Delay(AcceptRetryDelay, cancellationToken);
                continue;
            }

            try
            {
                accepted.NoDelay = _settings.Options.NoDelay;
                return new SocketConnection(accepted, _settings);
            }
            catch (SocketException)
            {
                // Reset between accept and setup.
                accepted.Dispose();
            }
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _listenSocket.Dispose();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        _listenSocket.Dispose();
        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1010, Level = LogLevel.Debug, Message = "A connection to {EndPoint} was reset before it was accepted ({Error})")]
        public static partial void AcceptReset(ILogger logger, EndPoint endPoint, SocketError error);

        [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "Accept on {EndPoint} failed ({Error}: {Detail}); retrying in 50 ms")]
        public static partial void AcceptFailed(ILogger logger, EndPoint endPoint, SocketError error, string detail);
    }
}

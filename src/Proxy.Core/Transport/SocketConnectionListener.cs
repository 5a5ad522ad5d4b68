using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Capture;
using Proxy.Core.Tcp.Splice;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>A bound listening socket that yields <see cref="SocketConnection"/>s (not yet started).</summary>
public sealed partial class SocketConnectionListener : IConnectionListener
{
    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(50);

    private readonly Socket _listenSocket;
    private readonly SocketConnectionSettings _settings;
    private readonly EpollSocket? _epoll;
    private readonly bool _setNoDelay;
    private readonly bool _withoutSocket;
    private readonly EndPoint? _sharedLocalEndPoint;
    private bool _mayHaveMore;

    /// <param name="listenSocket">The bound, listening socket.</param>
    /// <param name="settings">The transport's settings.</param>
    /// <param name="withoutSocket">
    /// Accept with <c>accept4</c> straight from the event loop and give connections no .NET <see cref="Socket"/> until
    /// something asks for one (<see cref="SocketConnection.Socket"/>): for listeners whose connections are served through
    /// their pipes alone. Only with event loops; otherwise ignored.
    /// </param>
    internal SocketConnectionListener(Socket listenSocket, SocketConnectionSettings settings, bool withoutSocket = false)
    {
        _listenSocket = listenSocket;
        _settings = settings;
        EndPoint = listenSocket.LocalEndPoint!;
        _setNoDelay = settings.Options.NoDelay && !TryInheritNoDelay(listenSocket);

        // Every connection's local address is the listener's unless it is bound to a wildcard address (as .NET does).
        if (EndPoint is IPEndPoint ip && !ip.Address.Equals(IPAddress.Any) && !ip.Address.Equals(IPAddress.IPv6Any))
        {
            _sharedLocalEndPoint = ip;
        }

        if (settings.Loops is { } loops)
        {
            // Accept on an event loop: the loop that reports the new connection also accepts it, so no other thread
            // (.NET's socket engine) is woken per connection.
            var epoll = new EpollSocket(listenSocket);
            var errno = epoll.Register(loops.Pick());
            if (errno != 0)
            {
                throw new SocketException((int)SocketNative.ToSocketError(errno));
            }

            _epoll = epoll;
            _withoutSocket = withoutSocket && OperatingSystem.IsLinux();
        }
    }

    /// <summary>The bound endpoint (with the real port when bound to port 0).</summary>
    public EndPoint EndPoint { get; }

    /// <summary>Accepts the next connection; null once the listener is unbound.</summary>
    public ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        => _withoutSocket ? AcceptWithoutSocketAsync(_epoll!, cancellationToken) : AcceptWithDotNetAsync(cancellationToken);

    private async ValueTask<ConnectionContext?> AcceptWithDotNetAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = _epoll is null
                    ? await _listenSocket.AcceptAsync(cancellationToken)
                    : await AcceptOnLoopAsync(_epoll, cancellationToken);
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
                if (_setNoDelay)
                {
                    accepted.NoDelay = true;
                }

                // Accepted from the non-blocking listener (the loop path): .NET has made the socket non-blocking.
                return new SocketConnection(accepted, _settings) { AcceptedNonBlocking = _epoll is not null && !accepted.Blocking };
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
        Close();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Close();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// On Linux an accepted socket starts with its listener's TCP options, TCP_NODELAY among them: set it once on the
    /// listener and every accepted connection has it without a <c>setsockopt</c> of its own (one system call less per
    /// connection). False where that is not so, or the listener refused it: each accepted socket is then set.
    /// </summary>
    private static bool TryInheritNoDelay(Socket listenSocket)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            listenSocket.NoDelay = true;
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void Close()
    {
        _listenSocket.Dispose();

        // Wakes a pending accept, which then finds the socket disposed and ends.
        _epoll?.OnClosed();
    }

    /// <summary>
    /// One connection from the (non-blocking) listening socket: accept while connections may be queued (a zero-timeout
    /// poll says whether one is, cheaper than a failed accept's exception), else wait for the loop's next edge.
    /// </summary>
    private async ValueTask<Socket> AcceptOnLoopAsync(EpollSocket epoll, CancellationToken cancellationToken)
    {
        CancellationTokenRegistration registration = default;
        try
        {
            while (true)
            {
                if (_mayHaveMore && !_listenSocket.Poll(0, SelectMode.SelectRead))
                {
                    _mayHaveMore = false;
                }

                if (!_mayHaveMore)
                {
                    if (cancellationToken.CanBeCanceled && registration == default)
                    {
                        registration = cancellationToken.UnsafeRegister(static s => ((EpollSocket)s!).Readable.Set(), epoll);
                    }

                    await epoll.Readable.WaitAsync();
                    cancellationToken.ThrowIfCancellationRequested();
                }

                try
                {
                    var socket = _listenSocket.Accept();
                    _mayHaveMore = true;
                    return socket;
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
                {
                    // Nothing queued after all (the client gave up): wait for the next edge.
                    _mayHaveMore = false;
                }
            }
        }
        finally
        {
            registration.Dispose();
        }
    }

    /// <summary>
    /// Accepts on the event loop with <c>accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)</c>: one system call per connection, where
    /// .NET's <see cref="Socket.Accept"/> adds two <c>fcntl</c> (to make the new socket non-blocking) and the loop a
    /// <c>poll</c> to learn whether another connection waits (an empty queue is an EAGAIN here, not an exception).
    /// </summary>
    private async ValueTask<ConnectionContext?> AcceptWithoutSocketAsync(EpollSocket epoll, CancellationToken cancellationToken)
    {
        CancellationTokenRegistration registration = default;
        try
        {
            while (true)
            {
                if (!_mayHaveMore)
                {
                    if (cancellationToken.CanBeCanceled && registration == default)
                    {
                        registration = cancellationToken.UnsafeRegister(static s => ((EpollSocket)s!).Readable.Set(), epoll);
                    }

                    await epoll.Readable.WaitAsync();
                    cancellationToken.ThrowIfCancellationRequested();
                }

                int errno;
                try
                {
                    if (TryAccept(out var connection, out errno))
                    {
                        _mayHaveMore = true;
                        return connection;
                    }
                }
                catch (ObjectDisposedException)
                {
                    // Unbound.
                    return null;
                }

                switch (errno)
                {
                    case SocketNative.EAGAIN:
                        // Queue drained: wait for the next edge.
                        _mayHaveMore = false;
                        break;
                    case SocketNative.EINTR:
                        _mayHaveMore = true;
                        break;
                    case SocketNative.ECONNABORTED:
                        // The client gave up before we accepted it: nothing to do.
                        Log.AcceptReset(_settings.Logger, EndPoint, SocketError.ConnectionAborted);
                        _mayHaveMore = true;
                        break;
                    case SocketNative.EBADF:
                    case SocketNative.EINVAL:
                        // Closed or no longer listening.
                        return null;
                    default:
                        // Out of file descriptors or memory: stopping the listener for good would be worse, and retrying at
                        // once would spin. Back off briefly; connections already open may free resources.
                        var error = SocketNative.ToSocketError(errno);
                        Log.AcceptFailed(_settings.Logger, EndPoint, error, Marshal.GetPInvokeErrorMessage(errno));
                        await Task.Delay(AcceptRetryDelay, cancellationToken);
                        _mayHaveMore = true;
                        break;
                }
            }
        }
        finally
        {
            registration.Dispose();
        }
    }

    /// <summary>One <c>accept4</c>; false with the errno when none was accepted.</summary>
    /// <exception cref="ObjectDisposedException">The listener was closed.</exception>
    private unsafe bool TryAccept(out ConnectionContext? connection, out int errno)
    {
        connection = null;
        var handle = _listenSocket.SafeHandle;
        var added = false;
        int fd;
        var address = stackalloc byte[SocketNative.SockaddrMaxLength];
        uint length = SocketNative.SockaddrMaxLength;
        try
        {
            handle.DangerousAddRef(ref added);
            // SOCK_NONBLOCK is O_NONBLOCK: the new descriptor is non-blocking and closed on exec from the start.
            fd = SocketNative.Accept4((int)handle.DangerousGetHandle(), address, &length, SpliceNative.O_NONBLOCK | SpliceNative.SOCK_CLOEXEC);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }

        if (fd < 0)
        {
            return false;
        }

        var accepted = new FileDescriptorHandle(fd);
        // A TCP peer is always AF_INET or AF_INET6; anything else stays unknown (null), as it would for .NET.
        var remote = OriginalDestinationParser.TryParse(new ReadOnlySpan<byte>(address, (int)Math.Min(length, (uint)SocketNative.SockaddrMaxLength)), out var parsed) ? parsed : null;
        var local = _sharedLocalEndPoint ?? LocalAddressOf(fd);
        if (_setNoDelay)
        {
            // An error means a reset between accept and setup: the connection's transport reports it.
            const int IpProtoTcp = 6;
            const int TcpNoDelay = 1;
            var on = 1;
            SpliceNative.SetSockOpt(fd, IpProtoTcp, TcpNoDelay, &on, sizeof(int));
        }

        connection = new SocketConnection(accepted, _settings, local, remote);
        return true;
    }

    /// <summary>The connection's own address (a wildcard listener's connections each have theirs): <c>getsockname</c>.</summary>
    private static unsafe IPEndPoint? LocalAddressOf(int fd)
    {
        var address = stackalloc byte[SocketNative.SockaddrMaxLength];
        uint length = SocketNative.SockaddrMaxLength;
        if (SocketNative.GetSockName(fd, address, &length) != 0)
        {
            return null;
        }

        return OriginalDestinationParser.TryParse(new ReadOnlySpan<byte>(address, (int)Math.Min(length, (uint)SocketNative.SockaddrMaxLength)), out var local) ? local : null;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1010, Level = LogLevel.Debug, Message = "A connection to {EndPoint} was reset before it was accepted ({Error})")]
        public static partial void AcceptReset(ILogger logger, EndPoint endPoint, SocketError error);

        [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "Accept on {EndPoint} failed ({Error}: {Detail}); retrying in 50 ms")]
        public static partial void AcceptFailed(ILogger logger, EndPoint endPoint, SocketError error, string detail);
    }
}

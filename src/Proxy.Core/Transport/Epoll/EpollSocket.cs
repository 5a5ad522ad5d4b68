using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// A non-blocking socket driven by an <see cref="EpollLoop"/> instead of .NET's socket engine: the connection's
/// receive loop reads only after the loop reported readability and its send loop waits only after EAGAIN, so no
/// read is wasted on an empty socket (.NET's engine tries, gets EAGAIN, waits, and reads again).
/// </summary>
/// <remarks>
/// System calls hold a reference on the socket's handle (its <see cref="SafeSocketHandle"/>, or the <see cref="FileDescriptorHandle"/> of a connection accepted without a .NET socket), so a concurrent close defers the
/// real <c>close()</c> until the call returns and the descriptor number cannot be reused under it.
/// </remarks>
internal sealed class EpollSocket
{
    private readonly Socket? _socket;
    private readonly SafeHandle _handle;
    private readonly int _fd;
    private EpollLoop? _loop;
    private MemoryHandle[]? _sendHandles;
    private SocketOperation? _receiveOperation;
    private SocketOperation? _sendOperation;
    private volatile bool _closed;
    private volatile bool _watchingWrite = true;
    private volatile bool _peerClosed;

    /// <param name="socket">The socket; from now on only this class reads and writes it.</param>
    /// <param name="tellDotNet">
    /// Make it non-blocking through <see cref="Socket.Blocking"/>, so .NET's own calls on it (a non-blocking
    /// <see cref="Socket.Connect(EndPoint)"/> or <see cref="Socket.Accept"/>) behave as non-blocking ones. False sets
    /// O_NONBLOCK directly: .NET's setter also creates its per-socket async context, which a connection whose reads
    /// and writes are all ours never needs (an allocation and two system calls per accepted connection).
    /// </param>
    /// <param name="alreadyNonBlocking">The descriptor is non-blocking already (accepted by .NET from a non-blocking listener, which sets O_NONBLOCK on it): no system call.</param>
    public EpollSocket(Socket socket, bool tellDotNet = true, bool alreadyNonBlocking = false)
    {
        _socket = socket;
        _handle = socket.SafeHandle;
        _fd = (int)_handle.DangerousGetHandle();
        if (alreadyNonBlocking)
        {
            // Nothing to do: one fcntl per accepted connection saved.
        }
        else if (tellDotNet)
        {
            socket.Blocking = false;
        }
        else
        {
            // One F_SETFL, no F_GETFL first: a socket's only status flags that matter are O_NONBLOCK and O_ASYNC
            // (never set here); F_SETFL ignores the access mode.
            if (SpliceNative.Fcntl(_fd, SpliceNative.F_SETFL, SpliceNative.O_NONBLOCK) < 0)
            {
                throw new SocketException((int)SocketNative.ToSocketError(Marshal.GetLastPInvokeError()));
            }
        }
    }

    /// <summary>
    /// A connection accepted by <c>accept4(SOCK_NONBLOCK)</c> without a .NET <see cref="Socket"/>: already non-blocking,
    /// no system call. Only reads, writes and readiness go through this class (no <see cref="ConnectAsync"/>).
    /// </summary>
    public EpollSocket(FileDescriptorHandle acceptedNonBlocking)
    {
        _handle = acceptedNonBlocking;
        _fd = (int)_handle.DangerousGetHandle();
    }

    /// <summary>
    /// Before waiting for <see cref="Writable"/> on a socket registered for reads only: adds write readiness (once).
    /// If that fails (the socket is closing), <see cref="Writable"/> is set so the waiter's next send reports the error.
    /// </summary>
    public void WatchWrite()
    {
        if (_watchingWrite)
        {
            return;
        }

        _watchingWrite = true;
        var added = false;
        var errno = SocketNative.EBADF;
        try
        {
            _handle.DangerousAddRef(ref added);
            if (_loop is { } loop)
            {
                errno = loop.WatchWrite(this, _fd);
            }
        }
        catch (ObjectDisposedException)
        {
            // Closed: as a failure below.
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }

        if (errno != 0)
        {
            Writable.Set();
        }
    }

    /// <summary>Set by the loop: readable data, FIN, or an error.</summary>
    public ReadinessSignal Readable { get; } = new();

    /// <summary>Set by the loop: send buffer space, connect done, or an error.</summary>
    public ReadinessSignal Writable { get; } = new();

    /// <summary>Registration token (generation and slot); only the loop reads it.</summary>
    internal ulong Token { get; set; }

    /// <summary>Slot in the loop's table, -1 when not registered.</summary>
    internal int Slot { get; set; } = -1;

    /// <summary>
    /// The loop saw the peer's FIN (RDHUP), a hang-up or an error: a short read no longer means the socket is
    /// drained, because no further edge will come. Read until EOF, an error or EAGAIN.
    /// </summary>
    public bool PeerClosed => _peerClosed;

    /// <summary>
    /// Registers with <paramref name="loop"/>; returns 0 or an errno. <paramref name="watchWrite"/> false registers for
    /// reads only, for a connected socket: a new socket is writable at once, and that first edge would cost the loop a
    /// pass of its own for nothing. The send loop calls <see cref="WatchWrite"/> once a send says EAGAIN.
    /// </summary>
    public int Register(EpollLoop loop, bool watchWrite = true)
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            _watchingWrite = watchWrite;
            var errno = loop.Register(this, _fd, watchWrite);
            if (errno == 0)
            {
                _loop = loop;
            }

            return errno;
        }
        catch (ObjectDisposedException)
        {
            return SocketNative.EBADF;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    /// <summary>Called by the loop with the epoll flags of one event.</summary>
    public void OnEvents(uint flags)
    {
        const uint ReadFlags = SpliceNative.EPOLLIN | SpliceNative.EPOLLRDHUP | SpliceNative.EPOLLHUP | SpliceNative.EPOLLERR;
        const uint WriteFlags = SpliceNative.EPOLLOUT | SpliceNative.EPOLLHUP | SpliceNative.EPOLLERR;
        if ((flags & WriteFlags) != 0)
        {
            Writable.Set();
        }

        if ((flags & ReadFlags) != 0)
        {
            if ((flags & (SpliceNative.EPOLLRDHUP | SpliceNative.EPOLLHUP | SpliceNative.EPOLLERR)) != 0)
            {
                _peerClosed = true;
            }

            Readable.Set();
        }
    }

    /// <summary>
    /// The socket is being closed: stop dispatching its events and wake both loops so they see the close
    /// (their next call fails with EBADF). Call after disposing the <see cref="Socket"/>.
    /// </summary>
    public void OnClosed()
    {
        _closed = true;
        _loop?.Unregister(this);
        Writable.Set();
        Readable.Set();
    }

    /// <summary>Non-blocking receive: bytes read, 0 at FIN, or -1 with <paramref name="errno"/> set (EAGAIN: nothing yet).</summary>
    public unsafe int Receive(Span<byte> buffer, out int errno)
    {
        var added = false;
        try
        {
            if (_closed)
            {
                errno = SocketNative.EBADF;
                return -1;
            }

            _handle.DangerousAddRef(ref added);
            while (true)
            {
                nint n;
                fixed (byte* p = buffer)
                {
                    n = SocketNative.Recv(_fd, p, (nuint)buffer.Length, 0);
                }

                if (n >= 0)
                {
                    errno = 0;
                    return (int)n;
                }

                errno = Marshal.GetLastSystemError();
                if (errno != SocketNative.EINTR)
                {
                    return -1;
                }
            }
        }
        catch (ObjectDisposedException)
        {
            errno = SocketNative.EBADF;
            return -1;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// <see cref="Receive"/>, batched: on an event loop thread whose loop has an io_uring, the call is queued and made
    /// with the rest of the loop's pass (one <c>io_uring_enter</c>); elsewhere it is made at once. Completes with the
    /// bytes read, 0 at FIN, or a negative errno (<c>-EAGAIN</c>: nothing yet).
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer)
    {
        if (!_closed && EpollLoop.Current?.Batch is { } ring)
        {
            var operation = _receiveOperation ??= new SocketOperation(_handle);
            if (operation.TryQueue(ring, _fd, buffer, send: false, 0, out var pending))
            {
                return pending;
            }
        }

        var n = Receive(buffer.Span, out var errno);
        return new ValueTask<int>(n >= 0 ? n : -errno);
    }

    /// <summary>
    /// <see cref="Send"/>, batched as <see cref="ReceiveAsync"/> when <paramref name="buffer"/> is one segment (the
    /// usual case); a buffer over several segments is sent at once with <c>sendmsg</c>. Completes with the bytes sent
    /// or a negative errno.
    /// </summary>
    public ValueTask<int> SendAsync(in ReadOnlySequence<byte> buffer)
    {
        if (!_closed && buffer.IsSingleSegment && EpollLoop.Current?.Batch is { } ring)
        {
            var operation = _sendOperation ??= new SocketOperation(_handle);
            if (operation.TryQueue(ring, _fd, buffer.First, send: true, SocketNative.MSG_NOSIGNAL, out var pending))
            {
                return pending;
            }
        }

        var n = Send(buffer, out var errno);
        return new ValueTask<int>(n >= 0 ? n : -errno);
    }

    /// <summary>
    /// Non-blocking send of a prefix of <paramref name="buffer"/> (one <c>send</c>, or one <c>sendmsg</c> over up to
    /// <see cref="SocketNative.MaxIov"/> segments): bytes sent, or -1 with <paramref name="errno"/> set.
    /// </summary>
    public unsafe int Send(in ReadOnlySequence<byte> buffer, out int errno)
    {
        var added = false;
        try
        {
            if (_closed)
            {
                errno = SocketNative.EBADF;
                return -1;
            }

            _handle.DangerousAddRef(ref added);
            while (true)
            {
                var n = buffer.IsSingleSegment ? SendOne(buffer.FirstSpan, out errno) : SendMany(buffer, out errno);
                if (n >= 0)
                {
                    return (int)n;
                }

                if (errno != SocketNative.EINTR)
                {
                    return -1;
                }
            }
        }
        catch (ObjectDisposedException)
        {
            errno = SocketNative.EBADF;
            return -1;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Starts a non-blocking connect and completes when it is established; the socket must not be registered yet
    /// (an unconnected socket reports itself writable). Registers with <paramref name="loop"/>.
    /// </summary>
    /// <exception cref="SocketException">The connect failed (refused, unreachable, ...).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public async ValueTask ConnectAsync(EndPoint endPoint, EpollLoop loop, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pending = false;
        try
        {
            (_socket ?? throw new InvalidOperationException("An accepted socket does not connect.")).Connect(endPoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.AlreadyInProgress)
        {
            pending = true;
        }

        var errno = Register(loop);
        if (errno != 0)
        {
            throw new SocketException((int)SocketNative.ToSocketError(errno));
        }

        if (!pending)
        {
            return;
        }

        await using var registration = cancellationToken.UnsafeRegister(static s => ((EpollSocket)s!).Writable.Set(), this).ConfigureAwait(false);
        while (true)
        {
            await Writable.WaitAsync();
            cancellationToken.ThrowIfCancellationRequested();
            var error = TakeSocketError();
            if (error != 0)
            {
                throw new SocketException((int)SocketNative.ToSocketError(error));
            }

            if (IsConnected())
            {
                return;
            }
        }
    }

    private unsafe nint SendOne(ReadOnlySpan<byte> span, out int errno)
    {
        fixed (byte* p = span)
        {
            var n = SocketNative.Send(_fd, p, (nuint)span.Length, SocketNative.MSG_NOSIGNAL);
            errno = n < 0 ? Marshal.GetLastSystemError() : 0;
            return n;
        }
    }

    private unsafe nint SendMany(in ReadOnlySequence<byte> buffer, out int errno)
    {
        var iov = stackalloc SocketNative.IoVec[SocketNative.MaxIov];
        // Only the connection's send loop sends, one call at a time: the pins can live in a field.
        var handles = _sendHandles ??= new MemoryHandle[SocketNative.MaxIov];
        var count = 0;
        try
        {
            foreach (var memory in buffer)
            {
                if (memory.IsEmpty)
                {
                    continue;
                }

                if (count == SocketNative.MaxIov)
                {
                    break;
                }

                handles[count] = memory.Pin();
                iov[count].Base = handles[count].Pointer;
                iov[count].Length = (nuint)memory.Length;
                count++;
            }

            SocketNative.MsgHdr message = default;
            message.Iov = iov;
            message.IovLength = (nuint)count;
            // errno right away: unpinning below may run runtime code.
            var n = SocketNative.SendMsg(_fd, &message, SocketNative.MSG_NOSIGNAL);
            errno = n < 0 ? Marshal.GetLastSystemError() : 0;
            return n;
        }
        finally
        {
            for (var i = 0; i < count; i++)
            {
                handles[i].Dispose();
                handles[i] = default;
            }
        }
    }

    private int TakeSocketError()
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            return SpliceNative.TakeSocketError(_fd);
        }
        catch (ObjectDisposedException)
        {
            return SocketNative.EBADF;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    private bool IsConnected()
    {
        try
        {
            // After a non-blocking connect .NET records the peer once a zero-timeout poll says writable.
            return _socket is { } socket && socket.Poll(0, SelectMode.SelectWrite) && socket.Connected;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Proxy.Core.Tcp.Splice;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>
/// A TCP connection (accepted by <see cref="SocketConnectionListener"/> or dialled by the upstream
/// connector) exposed as a <see cref="ConnectionContext"/> whose <see cref="Transport"/> is a pair of pipes:
/// <c>Input</c> is fed by a receive loop, <c>Output</c> is drained by a send loop. Buffers come from a
/// pinned block pool; steady-state receives and sends allocate nothing.
/// </summary>
/// <remarks>
/// <para>The loops start lazily, on the first use of <see cref="Transport"/> (or <see cref="Start"/>).
/// Until then <see cref="TryTakeOver"/> can hand the raw socket to a stage (splice forwarding); after a
/// takeover the transport never touches, reads, writes or closes the socket.</para>
/// <para>Semantics the rest of the proxy relies on:</para>
/// <list type="number">
/// <item>Peer FIN: <c>Transport.Input</c> completes normally (<c>ReadResult.IsCompleted</c>); <c>Output</c> stays usable.</item>
/// <item>Peer RST (ECONNRESET): <c>Input</c> completes with <see cref="ConnectionResetException"/>.</item>
/// <item>The application completes <c>Output</c> normally: pending bytes are sent, then <c>shutdown(SHUT_WR)</c>
/// sends FIN while receiving goes on (half-close). The socket is closed once both directions are done, or on
/// <see cref="DisposeAsync"/>.</item>
/// <item>The application completes <c>Output</c> with an exception, or calls <see cref="Abort(ConnectionAbortedException)"/>:
/// the socket is reset (SO_LINGER 0, then close) and pending output is dropped. <c>Input</c> then completes
/// with <see cref="ConnectionAbortedException"/>.</item>
/// <item><see cref="DisposeAsync"/> (Kestrel calls it after the connection middleware returns) closes
/// gracefully if nothing else did: it completes the application's ends of both pipes, waits until pending
/// output is sent (a peer that never reads keeps it waiting until someone calls <c>Abort</c>), then closes.</item>
/// <item><see cref="ConnectionClosed"/> fires once the socket is closed or reset (on the event loop after its current batch,
/// or on the thread pool); its callbacks must not block. After a
/// takeover it never fires: the socket's new owner decides when it closes.</item>
/// </list>
/// <para>If sending fails because the peer reset the connection, the application's next
/// <c>Output.FlushAsync</c> reports <c>IsCompleted</c>, and <c>Input</c> ends with <see cref="ConnectionResetException"/>.</para>
/// </remarks>
public sealed partial class SocketConnection : ConnectionContext,
    IConnectionIdFeature,
    IConnectionTransportFeature,
    IConnectionItemsFeature,
    IConnectionLifetimeFeature,
    IConnectionEndPointFeature,
    IConnectionSocketFeature,
    ITakeOverSocketFeature
{
    private const int StateNotStarted = 0;
    private const int StateStarted = 1;
    private const int StateTakenOver = 2;

    private static long s_lastConnectionId;

    // A connection accepted without a .NET socket (accept4 straight from the event loop) owns its descriptor through
    // _descriptor (closed with a plain close(): a SafeSocketHandle disposed outside its Socket would close abortively,
    // SO_LINGER 0, and the peer would see RST where a finished connection must end with FIN); _socket is then null until something asks for Socket, which creates one (under _startLock) over a
    // duplicate of the descriptor. Otherwise _socket is the socket and _handle its SafeSocketHandle.
    private Socket? _socket;
    private readonly SafeHandle _handle;
    private readonly FileDescriptorHandle? _descriptor;
    private readonly SocketConnectionSettings _settings;
    private readonly Lock _startLock = new();
    private readonly CancellationTokenSource _closedSource = new();
    private readonly long _numericId;
    private readonly ConnectionFeatures _features;

    private int _state;
    private int _socketClosed;
    private int _directionsDone;
    private int _disposed;
    private int _closedFired;
    private volatile bool _closingGracefully;
    private volatile bool _aborted;
    private volatile ConnectionAbortedException? _abortReason;
    private volatile ConnectionResetException? _sendReset;

    // The two pipes (their socket-side ends are used by the loops; the others are the application's transport).
    private PipeWriter? _inputWriter;
    private PipeReader? _outputReader;
    private IDuplexPipe? _appTransport;
    private IDuplexPipe? _originalAppTransport;
    private SocketAwaitableEventArgs? _receiver;
    private SocketAwaitableEventArgs? _sender;
    private EpollSocket? _epoll;
    private Task _receiveTask = Task.CompletedTask;
    private Task _sendTask = Task.CompletedTask;

    private string? _connectionId;
    private IDictionary<object, object?>? _items;
    private CancellationToken _connectionClosed;

    internal SocketConnection(Socket socket, SocketConnectionSettings settings)
        : this(socket, settings, epoll: null, remoteEndPoint: null)
    {
    }

    /// <summary>A connection over a socket already registered with an event loop (a dialled upstream).</summary>
    internal SocketConnection(Socket socket, SocketConnectionSettings settings, EpollSocket? epoll, EndPoint? remoteEndPoint)
    {
        _socket = socket;
        _handle = socket.SafeHandle;
        _settings = settings;
        _epoll = epoll;
        _numericId = Interlocked.Increment(ref s_lastConnectionId);
        _connectionClosed = _closedSource.Token;

        // Cache the endpoints now: they cannot be read once the socket is closed or taken over.
        LocalEndPoint = socket.LocalEndPoint;
        RemoteEndPoint = remoteEndPoint ?? socket.RemoteEndPoint;

        _features = new ConnectionFeatures(this);
    }

    /// <summary>
    /// A connection accepted by the event loop with <c>accept4(SOCK_NONBLOCK)</c>: no .NET <see cref="System.Net.Sockets.Socket"/>
    /// until something asks for <see cref="Socket"/>. Creating one from a descriptor costs .NET seven system calls
    /// (it asks the kernel what the socket is), so a connection served through <see cref="Transport"/> alone never does.
    /// </summary>
    internal SocketConnection(FileDescriptorHandle accepted, SocketConnectionSettings settings, EndPoint? localEndPoint, EndPoint? remoteEndPoint)
    {
        _handle = accepted;
        _descriptor = accepted;
        _settings = settings;
        _numericId = Interlocked.Increment(ref s_lastConnectionId);
        _connectionClosed = _closedSource.Token;
        LocalEndPoint = localEndPoint;
        RemoteEndPoint = remoteEndPoint;
        _features = new ConnectionFeatures(this);
    }

    /// <summary>
    /// The socket (also after a takeover, for inspection; the owner then is whoever took it). For a connection accepted
    /// without one, the first use creates it over a duplicate of the descriptor (the same kernel socket, closed with the
    /// connection); once the connection is closed it is a closed socket, whose operations throw
    /// <see cref="ObjectDisposedException"/>.
    /// </summary>
    public Socket Socket => Volatile.Read(ref _socket) ?? CreateSocket();

    /// <summary>Whether a .NET socket exists for this connection: false for one accepted without it and served through its pipes alone.</summary>
    public bool HasSocket => Volatile.Read(ref _socket) is not null;

    /// <summary>Set by the listener: .NET accepted the socket from a non-blocking listener, so O_NONBLOCK is set already.</summary>
    internal bool AcceptedNonBlocking { get; init; }

    /// <summary>Whether the receive and send loops are running (or ran).</summary>
    public bool IsStarted => Volatile.Read(ref _state) == StateStarted;

    /// <summary>Whether <see cref="TryTakeOver"/> succeeded.</summary>
    public bool IsTakenOver => Volatile.Read(ref _state) == StateTakenOver;

    public override string ConnectionId
    {
        get => _connectionId ??= "S" + _numericId.ToString("X8", System.Globalization.CultureInfo.InvariantCulture);
        set => _connectionId = value;
    }

    public override IFeatureCollection Features => _features;

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    /// <summary>
    /// The application's pipes. The first access (get or set) starts the receive and send loops; setting
    /// replaces what the application sees (e.g. a TLS layer) while the loops keep feeding the original pipes.
    /// </summary>
    /// <exception cref="InvalidOperationException">The socket was taken over.</exception>
    public override IDuplexPipe Transport
    {
        get
        {
            if (Volatile.Read(ref _state) != StateStarted)
            {
                Start();
            }

            return _appTransport!;
        }
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (Volatile.Read(ref _state) != StateStarted)
            {
                Start();
            }

            _appTransport = value;
        }
    }

    public override CancellationToken ConnectionClosed
    {
        get => _connectionClosed;
        set => _connectionClosed = value;
    }

    public override EndPoint? LocalEndPoint { get; set; }

    public override EndPoint? RemoteEndPoint { get; set; }

    /// <summary>Starts the receive and send loops (idempotent).</summary>
    /// <exception cref="InvalidOperationException">The socket was taken over.</exception>
    public void Start()
    {
        lock (_startLock)
        {
            if (_state == StateStarted)
            {
                return;
            }

            if (_state == StateTakenOver)
            {
                throw new InvalidOperationException("The socket was taken over by a stage; the transport can no longer use it.");
            }

            var (inputReader, inputWriter, outputReader, outputWriter) = _settings.CreatePipes();
            _inputWriter = inputWriter;
            _outputReader = outputReader;
            _originalAppTransport = new DuplexPipe(inputReader, outputWriter);
            _appTransport = _originalAppTransport;
            if (_epoll is null && _settings.Loops is { } loops && Volatile.Read(ref _socketClosed) == 0)
            {
                try
                {
                    var epoll = _descriptor is { } descriptor
                        ? new EpollSocket(descriptor)
                        : new EpollSocket(_socket!, tellDotNet: false, alreadyNonBlocking: AcceptedNonBlocking);
                    _epoll = epoll;
                    // Accepted, so connected: no need to hear that it is writable until a send says it is not.
                    if (epoll.Register(loops.Pick(), watchWrite: false) != 0)
                    {
                        // Closed under us (EBADF), or the kernel refused: no event will ever come, so end both loops
                        // now; their first system call reports the closed socket.
                        epoll.OnClosed();
                    }
                }
                catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
                {
                    // Closed under us: the socket engine's path below reports it like any closed socket.
                }
            }

            if (_epoll is null)
            {
                _receiver = new SocketAwaitableEventArgs(_settings.SocketScheduler);
                _sender = new SocketAwaitableEventArgs(_settings.SocketScheduler);
            }

            Volatile.Write(ref _state, StateStarted);
        }

        // The pumps run for the connection's life and resume per read and write: they capture no execution context.
        using (SuppressedFlow.Begin())
        {
            if (_epoll is { } io)
            {
                _receiveTask = EpollReceiveLoopAsync(io);
                _sendTask = EpollSendLoopAsync(io);
            }
            else
            {
                _receiveTask = ReceiveLoopAsync();
                _sendTask = SendLoopAsync();
            }
        }
    }

    /// <inheritdoc/>
    public bool CanTakeOver => Volatile.Read(ref _state) == StateNotStarted && Volatile.Read(ref _socketClosed) == 0;

    /// <inheritdoc/>
    public bool TryTakeOver(out Socket socket)
    {
        lock (_startLock)
        {
            if (_state == StateNotStarted && Volatile.Read(ref _socketClosed) == 0)
            {
                socket = Socket;
                _state = StateTakenOver;

                // The new owner has the duplicate: ours must not keep the connection open once it closes that.
                _descriptor?.Dispose();
                return true;
            }
        }

        socket = null!;
        return false;
    }

    private Socket CreateSocket()
    {
        lock (_startLock)
        {
            if (_socket is { } existing)
            {
                return existing;
            }

            Socket? socket = null;
            if (Volatile.Read(ref _socketClosed) == 0)
            {
                var duplicate = WithDescriptor(static fd => SpliceNative.Fcntl(fd, FDupFdCloExec, 0));
                if (duplicate >= 0)
                {
                    try
                    {
                        socket = new Socket(new SafeSocketHandle(duplicate, ownsHandle: true))
                        {
                            // As .NET's own accept from a non-blocking listener leaves it (a socket over a descriptor
                            // starts out "blocking", which .NET emulates over the non-blocking descriptor).
                            Blocking = false,
                        };
                    }
                    catch (SocketException)
                    {
                        SpliceNative.Close(duplicate);
                    }
                }
            }

            if (socket is null)
            {
                // The descriptor is gone: a socket closed like it, so callers see what they would have seen on the
                // connection's own closed socket.
                socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                socket.Dispose();
            }

            Volatile.Write(ref _socket, socket);
            return socket;
        }
    }

    public override void Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    /// <summary>Resets the connection (SO_LINGER 0 + close): the peer sees RST, pending output is dropped.</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        if (IsTakenOver)
        {
            return;
        }

        _abortReason ??= abortReason;
        _aborted = true;
        if (_settings.Logger.IsEnabled(LogLevel.Debug))
        {
            Log.Aborting(_settings.Logger, ConnectionId, abortReason.Message);
        }

        CloseSocket(reset: true);

        // Wake the send loop if it waits for application data.
        _outputReader?.CancelPendingRead();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            if (!IsTakenOver)
            {
                await CloseGracefullyAsync().ConfigureAwait(false);
            }

            _closedSource.Dispose();
        }

        await base.DisposeAsync().ConfigureAwait(false);
    }

    private async ValueTask CloseGracefullyAsync()
    {
        if (_originalAppTransport is { } app)
        {
            // The application is done: send what it wrote, FIN, then close.
            await app.Input.CompleteAsync().ConfigureAwait(false);
            await app.Output.CompleteAsync().ConfigureAwait(false);
            await _sendTask.ConfigureAwait(false);

            // Nobody reads Input any more: the receive loop need not explain why it ended.
            _closingGracefully = true;
            CloseSocket(reset: false);
            await _receiveTask.ConfigureAwait(false);
            _receiver?.Dispose();
            _sender?.Dispose();
        }
        else
        {
            CloseSocket(reset: false);
        }

        FireConnectionClosed();
    }

    private async Task ReceiveLoopAsync()
    {
        var input = _inputWriter!;
        var receiver = _receiver!;
        var waitForData = _settings.Options.WaitForDataBeforeAllocatingBuffer;
        var minRead = Math.Max(1, _settings.Pool.BlockSize / 2);
        Exception? error = null;
        try
        {
            while (true)
            {
                if (waitForData)
                {
                    // Zero-byte receive: completes when data or FIN is there, holding no buffer meanwhile.
                    await receiver.ReceiveAsync(Socket, Memory<byte>.Empty);
                }

                var buffer = input.GetMemory(minRead);
                var received = await receiver.ReceiveAsync(Socket, buffer);
                if (received == 0)
                {
                    // FIN. If a send already consumed the kernel's pending ECONNRESET, report the reset here too.
                    error = _sendReset;
                    break;
                }

                input.Advance(received);
                var flush = await input.FlushAsync();
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    // The application stopped reading.
                    break;
                }
            }
        }
        catch (SocketException ex) when (!_aborted && IsResetError(ex.SocketErrorCode))
        {
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (Exception ex) when (_aborted || ex is ObjectDisposedException || (ex is SocketException se && IsAbortError(se.SocketErrorCode)))
        {
            error = _abortReason ?? new ConnectionAbortedException("The connection was closed locally.", ex);
        }
        catch (Exception ex)
        {
            error = new IOException($"Receive failed: {ex.Message}", ex);
        }
        finally
        {
            await input.CompleteAsync(error);
            DirectionDone();
        }
    }

    private async Task SendLoopAsync()
    {
        var output = _outputReader!;
        var sender = _sender!;
        var reset = false;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await output.ReadAsync();
                }
                catch (Exception ex)
                {
                    OnOutputFaulted(ex);
                    reset = true;
                    break;
                }

                if (result.IsCanceled)
                {
                    // Abort() woke us: the socket is already reset.
                    break;
                }

                var buffer = result.Buffer;
                var sent = true;

                // Inlined rather than a helper: an async helper returning ValueTask would allocate its state
                // machine box every time a send completes asynchronously; this loop's box is allocated once.
                try
                {
                    var remaining = buffer;
                    while (!remaining.IsEmpty)
                    {
                        var chunk = FirstSegments(remaining);
                        await sender.SendAsync(Socket, chunk);
                        remaining = remaining.Slice(chunk.Length);
                    }
                }
                catch (SocketException ex) when (!_aborted && IsResetError(ex.SocketErrorCode))
                {
                    _sendReset = new ConnectionResetException(ex.Message, ex);
                    sent = false;
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    sent = false;
                }

                if (!sent)
                {
                    output.AdvanceTo(buffer.End);
                    break;
                }

                output.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    HalfClose();
                    break;
                }
            }
        }
        finally
        {
            // Completing our reader makes the application's next FlushAsync report IsCompleted.
            await output.CompleteAsync();
            if (reset)
            {
                _aborted = true;
                CloseSocket(reset: true);
            }

            DirectionDone();
        }
    }

    /// <summary>The longest prefix of <paramref name="buffer"/> with at most <see cref="SocketAwaitableEventArgs.MaxSendSegments"/> segments.</summary>
    private static ReadOnlySequence<byte> FirstSegments(in ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            return buffer;
        }

        var segments = 0;
        long length = 0;
        foreach (var memory in buffer)
        {
            if (++segments > SocketAwaitableEventArgs.MaxSendSegments)
            {
                return buffer.Slice(0, length);
            }

            length += memory.Length;
        }

        return buffer;
    }

    /// <summary>The application completed Output with an exception: the send loop resets and drops pending output.</summary>
    private void OnOutputFaulted(Exception ex)
    {
        if (_settings.Logger.IsEnabled(LogLevel.Debug))
        {
            Log.OutputFaulted(_settings.Logger, ConnectionId, ex.Message);
        }

        _abortReason ??= new ConnectionAbortedException("The application completed the output with an error.", ex);
    }

    /// <summary>The application completed Output normally and everything was sent: FIN toward the peer, keep receiving.</summary>
    private void HalfClose()
    {
        if (_aborted)
        {
            return;
        }

        if (Volatile.Read(ref _socket) is { } socket)
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The peer is already gone; the receive loop reports it.
            }
        }
        else
        {
            // An error means the peer is already gone; the receive loop reports it.
            WithDescriptor(static fd => SpliceNative.Shutdown(fd, SpliceNative.SHUT_WR));
        }
    }

    private void DirectionDone()
    {
        if (Interlocked.Increment(ref _directionsDone) == 2)
        {
            CloseSocket(reset: false);
        }
    }

    private void CloseSocket(bool reset)
    {
        if (Interlocked.Exchange(ref _socketClosed, 1) != 0)
        {
            return;
        }

        var socket = _socket;
        if (_descriptor is not null)
        {
            // Not while CreateSocket makes one over the descriptor (it checks _socketClosed under this lock).
            lock (_startLock)
            {
                socket = _socket;
            }
        }

        if (socket is not null)
        {
            if (reset)
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // Already dead: closing is all that is left.
                }
            }

            socket.Dispose();
        }
        else if (reset)
        {
            // SO_LINGER {on, 0 s}: close sends RST. An error means it is already dead: closing is all that is left.
            WithDescriptor(static fd =>
            {
                SpliceNative.SetLingerZero(fd);
                return 0;
            });
        }

        // The kernel socket closes with the last descriptor: the duplicate above (if any), then this one.
        _descriptor?.Dispose();

        // Wake the epoll loops, if they wait: their next system call fails and they end.
        _epoll?.OnClosed();

        // Token callbacks must not run inside the socket code that closed it (re-entrance): on an event loop they run
        // once its current batch is done (no other thread woken, which costs more than the rest of a close); elsewhere
        // on the thread pool. Callbacks must not block either way (the event loop's rule).
        if (EpollLoop.Current is { } loop)
        {
            loop.Defer(static c => ((SocketConnection)c!).FireConnectionClosed(), this);
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(static c => c.FireConnectionClosed(), this, preferLocal: false);
        }
    }

    private void FireConnectionClosed()
    {
        // Once: the close path and DisposeAsync both get here, and a cancel after the source's disposal would throw.
        if (Interlocked.Exchange(ref _closedFired, 1) != 0)
        {
            return;
        }

        try
        {
            _closedSource.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // DisposeAsync disposed it meanwhile.
        }
    }

    private const int FDupFdCloExec = 1030;

    /// <summary>
    /// Runs a system call on the descriptor while holding a reference on its handle, so a concurrent close cannot free
    /// the number under it. Returns the call's result, or -1 when the handle is closed already.
    /// </summary>
    private int WithDescriptor(Func<int, int> call)
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            return call((int)_handle.DangerousGetHandle());
        }
        catch (ObjectDisposedException)
        {
            // Closed already.
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

    private static bool IsResetError(SocketError error) =>
        error is SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown;

    private static bool IsAbortError(SocketError error) =>
        error is SocketError.OperationAborted or SocketError.Interrupted or SocketError.InvalidArgument or SocketError.NotSocket;

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Connection {ConnectionId} reset: {Reason}")]
        public static partial void Aborting(ILogger logger, string connectionId, string reason);

        [LoggerMessage(EventId = 1002, Level = LogLevel.Debug, Message = "Connection {ConnectionId} reset because the application completed its output with an error: {Reason}")]
        public static partial void OutputFaulted(ILogger logger, string connectionId, string reason);
    }
}

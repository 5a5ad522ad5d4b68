using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// One thread that owns an epoll instance and wakes the connections registered with it.
/// <code>
///   register: epoll_ctl(ADD, fd, IN|OUT|RDHUP|ET, token = generation:slot)      (any thread, once per socket)
///   thread:   epoll_wait ─► token ─► slot ─► socket.OnEvents: Readable.Set / Writable.Set
///                                            └─ the waiting receive or send loop runs inline, on this thread
/// </code>
/// Edge-triggered: each socket is registered once and never modified; its loops read or write until a short
/// read or EAGAIN and then wait for the next edge. Nothing else runs here: the connection code that the
/// signals resume must not block (the same rule as inline socket completions). Slots carry a generation so
/// an event fetched for a socket that closed earlier in the same batch, or whose slot was reused, is dropped.
/// </summary>
internal sealed unsafe partial class EpollLoop : IDisposable
{
    private const int MaxEvents = 256;
    private const uint BatchEntries = 256;
    private const ulong WakeToken = ulong.MaxValue;
    private const uint SocketEvents = SpliceNative.EPOLLIN | SpliceNative.EPOLLOUT | SpliceNative.EPOLLRDHUP | SpliceNative.EPOLLET;
    private const uint ReadEvents = SpliceNative.EPOLLIN | SpliceNative.EPOLLRDHUP | SpliceNative.EPOLLET;

    [ThreadStatic]
    private static EpollLoop? t_current;

    private readonly FileDescriptorHandle _epoll;
    private readonly FileDescriptorHandle _wake;
    private readonly Lock _lock = new();
    private readonly Thread _thread;
    private readonly ILogger _logger;
    private readonly bool _useBatch;
    private IoUringBatch? _batch;
    private EpollSocket?[] _slots = new EpollSocket?[256];
    private uint[] _generations = new uint[256];
    private int[] _freeSlots = new int[256];
    private int _freeCount;
    private int _slotsUsed;
    private volatile bool _stopping;

    // Work deferred to the end of the current event batch (only the loop thread adds and runs it).
    private (Action<object?> Action, object? State)[] _deferred = new (Action<object?>, object?)[16];
    private int _deferredCount;

    public EpollLoop(string name, ILogger logger, bool batchSystemCalls = false)
    {
        _logger = logger;
        _useBatch = batchSystemCalls;
        (_epoll, _wake) = SpliceNative.CreateEpollWithWake(WakeToken);
        _thread = new Thread(static s => ((EpollLoop)s!).Run()) { IsBackground = true, Name = name };
        _thread.UnsafeStart(this);
    }

    /// <summary>The loop whose thread is running the caller, if any.</summary>
    public static EpollLoop? Current => t_current;

    /// <summary>
    /// The io_uring this loop issues its pass's socket calls through (see <see cref="IoUringBatch"/>), or null: not
    /// asked for, or not available here. Only the loop's own thread may use it.
    /// </summary>
    public IoUringBatch? Batch => _batch;

    /// <summary>
    /// Registers <paramref name="socket"/> (edge-triggered, read, and write unless <paramref name="watchWrite"/> is
    /// false: see <see cref="WatchWrite"/>). Readiness that already exists is reported at once. Returns 0 or the errno
    /// of <c>epoll_ctl</c>.
    /// </summary>
    public int Register(EpollSocket socket, int fd, bool watchWrite = true)
    {
        int slot;
        ulong token;
        lock (_lock)
        {
            if (_stopping)
            {
                return SocketNative.EBADF;
            }

            slot = AllocateSlot();
            token = ((ulong)_generations[slot] << 32) | (uint)slot;
            socket.Token = token;
            socket.Slot = slot;
            _slots[slot] = socket;
        }

        if (SpliceNative.EpollControl(_epoll.Fd, SpliceNative.EPOLL_CTL_ADD, fd, watchWrite ? SocketEvents : ReadEvents, token) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Unregister(socket);
            return errno;
        }

        return 0;
    }

    /// <summary>
    /// Adds write readiness to a socket registered for reads only. A socket that is writable now is reported at once
    /// (epoll re-checks readiness on a change), so calling this after a send said EAGAIN loses no wake-up. Returns 0
    /// or the errno of <c>epoll_ctl</c>.
    /// </summary>
    public int WatchWrite(EpollSocket socket, int fd)
        => SpliceNative.EpollControl(_epoll.Fd, SpliceNative.EPOLL_CTL_MOD, fd, SocketEvents, socket.Token) != 0 ? Marshal.GetLastPInvokeError() : 0;

    /// <summary>
    /// Forgets <paramref name="socket"/>: events still in flight for it are dropped. Closing the descriptor
    /// removes it from the epoll set (no EPOLL_CTL_DEL needed).
    /// </summary>
    public void Unregister(EpollSocket socket)
    {
        lock (_lock)
        {
            var slot = socket.Slot;
            if (slot < 0 || _slots[slot] != socket)
            {
                return;
            }

            _slots[slot] = null;
            _generations[slot]++;
            _freeSlots[_freeCount++] = slot;
            socket.Slot = -1;
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on this loop's thread once the current batch of events has been handled: after
    /// the code that asked for it has unwound (no re-entrance), without waking another thread. Call only from this
    /// loop's thread (see <see cref="Current"/>). The action must not block.
    /// </summary>
    public void Defer(Action<object?> action, object? state)
    {
        if (Thread.CurrentThread != _thread)
        {
            throw new InvalidOperationException("Defer is for the loop's own thread.");
        }

        if (_deferredCount == _deferred.Length)
        {
            Array.Resize(ref _deferred, _deferred.Length * 2);
        }

        _deferred[_deferredCount++] = (action, state);
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        ulong one = 1;
        _ = SpliceNative.Write(_wake.Fd, &one, sizeof(ulong));
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
    }

    private void Run()
    {
        t_current = this;
        // Nothing on the loop thread flows an execution context: async methods started here capture none, so each
        // resumption calls the state machine directly instead of going through ExecutionContext.RunInternal (about
        // twenty resumptions per forwarded HTTP/2 stream). The thread ends with flow still suppressed.
        _ = ExecutionContext.SuppressFlow();
        var eventSize = SpliceNative.EpollEventSize;
        var dataOffset = SpliceNative.EpollDataOffset;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * eventSize));
        if (_useBatch)
        {
            _batch = IoUringBatch.TryCreate(BatchEntries);
            if (_batch is null)
            {
                Log.BatchUnavailable(_logger, _thread.Name ?? "epoll");
            }
        }

        try
        {
            while (!_stopping)
            {
                var n = SpliceNative.EpollWait(_epoll.Fd, events, MaxEvents, -1);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == SpliceNative.EINTR)
                    {
                        continue;
                    }

                    Log.EpollWaitFailed(_logger, _thread.Name ?? "epoll", errno);
                    break;
                }

                // Read without the lock: a grown array is published whole; a stale slot fails the token check.
                var slots = Volatile.Read(ref _slots);
                for (var i = 0; i < n; i++)
                {
                    var ev = events + (i * eventSize);
                    var flags = *(uint*)ev;
                    var data = *(ulong*)(ev + dataOffset);
                    if (data == WakeToken)
                    {
                        continue;
                    }

                    var slot = (int)(uint)data;
                    var socket = (uint)slot < (uint)slots.Length ? Volatile.Read(ref slots[slot]) : null;
                    if (socket is null || socket.Token != data)
                    {
                        continue;
                    }

                    try
                    {
                        socket.OnEvents(flags);
                    }
                    catch (Exception e)
                    {
                        // Continuations are async state machines, which do not throw; this is a bug guard that
                        // keeps every other connection of this loop alive.
                        Log.DispatchFailed(_logger, e);
                    }
                }

                RunDeferred();
                if (_batch is { } batch)
                {
                    // Issue the pass's queued calls; their continuations may queue or defer more: until none is left.
                    while (batch.Queued > 0)
                    {
                        batch.Issue();
                        RunDeferred();
                    }
                }
            }
        }
        finally
        {
            _batch?.Dispose();
            NativeMemory.Free(events);
            _wake.Dispose();
            _epoll.Dispose();
        }
    }

    private void RunDeferred()
    {
        // Deferred work may defer more; it runs in this same pass.
        for (var i = 0; i < _deferredCount; i++)
        {
            var (action, state) = _deferred[i];
            _deferred[i] = default;
            try
            {
                action(state);
            }
            catch (Exception e)
            {
                Log.DispatchFailed(_logger, e);
            }
        }

        _deferredCount = 0;
    }

    private int AllocateSlot()
    {
        if (_freeCount > 0)
        {
            return _freeSlots[--_freeCount];
        }

        if (_slotsUsed == _slots.Length)
        {
            var size = _slots.Length * 2;
            var slots = new EpollSocket?[size];
            Array.Copy(_slots, slots, _slots.Length);
            Array.Resize(ref _generations, size);
            Array.Resize(ref _freeSlots, size);
            Volatile.Write(ref _slots, slots);
        }

        return _slotsUsed++;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1020, Level = LogLevel.Critical, Message = "Event loop {Loop} stopped: epoll_wait failed with errno {Errno}; its connections no longer make progress.")]
        public static partial void EpollWaitFailed(ILogger logger, string loop, int errno);

        [LoggerMessage(EventId = 1022, Level = LogLevel.Information, Message = "Event loop {Loop}: io_uring is not available here; socket calls are made one at a time.")]
        public static partial void BatchUnavailable(ILogger logger, string loop);

        [LoggerMessage(EventId = 1021, Level = LogLevel.Error, Message = "A connection's continuation threw on the event loop; the loop goes on.")]
        public static partial void DispatchFailed(ILogger logger, Exception exception);
    }
}

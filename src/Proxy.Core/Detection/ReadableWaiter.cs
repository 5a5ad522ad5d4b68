using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Detection;

/// <summary>How a <see cref="ReadableWaiter"/> wait ended.</summary>
internal enum WaitOutcome : byte
{
    /// <summary>At least the requested number of bytes is queued, or the peer closed (FIN) or failed (RST).</summary>
    Readable,

    /// <summary>The deadline passed first.</summary>
    TimedOut,

    /// <summary>The socket could not be registered (e.g. already closed).</summary>
    Failed,
}

/// <summary>
/// Waits, without reading, until a socket has at least N bytes queued (Linux only). This is what protocol
/// detection needs after a peek that was not enough: a zero-byte receive cannot wait for <i>more</i> bytes.
/// <code>
///   WaitAsync(socket, n, deadline) ─ setsockopt(SO_RCVLOWAT, n) ─ epoll_ctl(ADD, IN|RDHUP|ONESHOT) ─┐
///   waiter thread: epoll_wait(timeout = earliest deadline) ─ event or deadline ─ epoll_ctl(DEL),    │
///                  SO_RCVLOWAT back to 1, complete the wait (continuation on the thread pool)  ◄──┘
/// </code>
/// <para>TCP readiness honours <c>SO_RCVLOWAT</c>: EPOLLIN is reported only once that many bytes are queued (or on
/// FIN or error), so the thread wakes exactly when there is something new to classify: no polling. The socket is
/// registered only with this private epoll, never with .NET's socket engine, so a connection later handed to
/// splice(2) causes no wakeups in .NET's engine. The socket's handle is ref-counted during a wait so its
/// descriptor number cannot be closed and reused under the registration; a socket disposed meanwhile closes
/// when the wait ends (at the latest at its deadline).</para>
/// </summary>
internal sealed unsafe partial class ReadableWaiter : IDisposable
{
    private const int MaxEvents = 64;
    private const ulong WakeToken = ulong.MaxValue;
    private const int SolSocket = 1;
    private const int SoRcvLowat = 18;
    private const uint WaitEvents = SpliceNative.EPOLLIN | SpliceNative.EPOLLRDHUP | (1u << 30); // EPOLLONESHOT

    private static readonly Lazy<ReadableWaiter> s_shared = new(static () => new ReadableWaiter(NullLogger.Instance));

    private readonly FileDescriptorHandle _epoll;
    private readonly FileDescriptorHandle _wake;
    private readonly Lock _lock = new();
    private readonly Stack<Wait> _pool = new();
    private readonly Thread _thread;
    private readonly ILogger _logger;
    private Wait?[] _slots = new Wait?[64];
    private int _used;
    private long _sleepUntilMs = long.MaxValue;
    private volatile bool _stopping;

    public ReadableWaiter(ILogger logger)
    {
        _logger = logger;
        (_epoll, _wake) = SpliceNative.CreateEpollWithWake(WakeToken);
        _thread = new Thread(static s => ((ReadableWaiter)s!).Run()) { IsBackground = true, Name = "detect-waiter" };
        _thread.UnsafeStart(this);
    }

    /// <summary>Whether this platform has what the waiter needs (Linux epoll and SO_RCVLOWAT on TCP).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>One waiter (one thread) for the process, created on first use.</summary>
    public static ReadableWaiter Shared => s_shared.Value;

    /// <summary>
    /// Completes when <paramref name="socket"/> has at least <paramref name="minBytes"/> bytes queued, the peer closed
    /// or reset, or <paramref name="deadlineMs"/> (<see cref="Environment.TickCount64"/>) passed. Cancelling
    /// <paramref name="cancellationToken"/> ends it as <see cref="WaitOutcome.Failed"/>.
    /// </summary>
    public ValueTask<WaitOutcome> WaitAsync(Socket socket, int minBytes, long deadlineMs, CancellationToken cancellationToken = default)
    {
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            return new ValueTask<WaitOutcome>(WaitOutcome.Failed);
        }

        var fd = (int)handle.DangerousGetHandle();
        if (!SetLowWater(fd, Math.Max(1, minBytes)))
        {
            handle.DangerousRelease();
            return new ValueTask<WaitOutcome>(WaitOutcome.Failed);
        }

        Wait wait;
        bool registered;
        bool wake;
        lock (_lock)
        {
            // Only a deadline earlier than the one the thread sleeps toward needs the eventfd write.
            wake = deadlineMs < _sleepUntilMs;
            // Registering under the lock: the thread cannot expire or complete the wait before it is in epoll.
            wait = _pool.Count > 0 ? _pool.Pop() : new Wait(this);
            var slot = FreeSlotUnsynchronized();
            wait.Arm(handle, fd, deadlineMs, slot);
            registered = SpliceNative.EpollControl(_epoll.Fd, SpliceNative.EPOLL_CTL_ADD, fd, WaitEvents, wait.Token) == 0;
            if (registered)
            {
                _slots[slot] = wait;
                _used = Math.Max(_used, slot + 1);
            }
        }

        var version = wait.Version;
        if (!registered)
        {
            Finish(wait, WaitOutcome.Failed, registered: false);
        }
        else
        {
            if (cancellationToken.CanBeCanceled)
            {
                wait.Registration = cancellationToken.UnsafeRegister(static (s, _) => ((Wait)s!).Cancel(), wait);
            }

            if (wake)
            {
                Wake();
            }
        }

        return new ValueTask<WaitOutcome>(wait, version);
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        Wake();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }

        _wake.Dispose();
        _epoll.Dispose();
    }

    /// <summary>
    /// <c>recv(MSG_PEEK | MSG_DONTWAIT)</c>: bytes copied, 0 at FIN, -1 with EAGAIN when nothing is queued, -2 on
    /// another error. Never blocks and never involves .NET's socket engine.
    /// </summary>
    public static int PeekNonBlocking(Socket socket, Span<byte> buffer)
    {
        const int MsgPeek = 0x2;
        const int MsgDontWait = 0x40;
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            nint n;
            fixed (byte* p = buffer)
            {
                n = Recv((int)handle.DangerousGetHandle(), p, (nuint)buffer.Length, MsgPeek | MsgDontWait);
            }

            if (n >= 0)
            {
                return (int)n;
            }

            var errno = Marshal.GetLastPInvokeError();
            return errno == SpliceNative.EAGAIN || errno == SpliceNative.EINTR ? -1 : -2;
        }
        catch (ObjectDisposedException)
        {
            return -2;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    private static bool SetLowWater(int fd, int bytes) => SpliceNative.SetSockOpt(fd, SolSocket, SoRcvLowat, &bytes, sizeof(int)) == 0;

    private int FreeSlotUnsynchronized()
    {
        for (var i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] is null)
            {
                return i;
            }
        }

        var grown = new Wait?[_slots.Length * 2];
        _slots.CopyTo(grown, 0);
        var slot = _slots.Length;
        _slots = grown;
        return slot;
    }

    private void Wake()
    {
        ulong one = 1;
        _ = SpliceNative.Write(_wake.Fd, &one, sizeof(ulong));
    }

    private void Run()
    {
        var eventSize = SpliceNative.EpollEventSize;
        var dataOffset = SpliceNative.EpollDataOffset;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * eventSize));
        var due = new List<Wait>();
        try
        {
            while (!_stopping)
            {
                var n = SpliceNative.EpollWait(_epoll.Fd, events, MaxEvents, ComputeTimeout());
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == SpliceNative.EINTR)
                    {
                        continue;
                    }

                    Log.EpollWaitFailed(_logger, errno);
                    break;
                }

                for (var i = 0; i < n; i++)
                {
                    var data = *(ulong*)(events + (i * eventSize) + dataOffset);
                    if (data == WakeToken)
                    {
                        ulong drained;
                        _ = SpliceNative.Read(_wake.Fd, &drained, sizeof(ulong));
                        continue;
                    }

                    var slot = (int)(uint)data;
                    lock (_lock)
                    {
                        if ((uint)slot < (uint)_slots.Length && _slots[slot] is { } w && w.Token == data)
                        {
                            _slots[slot] = null;
                            due.Add(w);
                        }
                    }

                    foreach (var w in due)
                    {
                        Finish(w, WaitOutcome.Readable, registered: true);
                    }

                    due.Clear();
                }

                CollectExpired(due);
                foreach (var w in due)
                {
                    Finish(w, WaitOutcome.TimedOut, registered: true);
                }

                due.Clear();
            }
        }
        finally
        {
            NativeMemory.Free(events);

            // Stopping: whoever still waits learns it now rather than at its deadline.
            CollectAll(due);
            foreach (var w in due)
            {
                Finish(w, WaitOutcome.Failed, registered: true);
            }
        }
    }

    private int ComputeTimeout()
    {
        var earliest = long.MaxValue;
        lock (_lock)
        {
            for (var i = 0; i < _used; i++)
            {
                if (_slots[i] is { } w && w.DeadlineMs < earliest)
                {
                    earliest = w.DeadlineMs;
                }
            }

            // Read by WaitAsync under the same lock: a wait added after this sees it, one added before is counted.
            _sleepUntilMs = earliest;
        }

        if (earliest == long.MaxValue)
        {
            return -1;
        }

        var ms = earliest - Environment.TickCount64;
        return ms <= 0 ? 0 : (int)Math.Min(ms, int.MaxValue);
    }

    private void CollectExpired(List<Wait> due)
    {
        var now = Environment.TickCount64;
        lock (_lock)
        {
            for (var i = 0; i < _used; i++)
            {
                if (_slots[i] is { } w && w.DeadlineMs <= now)
                {
                    _slots[i] = null;
                    due.Add(w);
                }
            }
        }
    }

    private void CollectAll(List<Wait> due)
    {
        lock (_lock)
        {
            for (var i = 0; i < _used; i++)
            {
                if (_slots[i] is { } w)
                {
                    _slots[i] = null;
                    due.Add(w);
                }
            }
        }
    }

    private void Finish(Wait wait, WaitOutcome outcome, bool registered)
    {
        if (registered)
        {
            _ = SpliceNative.EpollControl(_epoll.Fd, SpliceNative.EPOLL_CTL_DEL, wait.Fd, 0, 0);
        }

        // Back to the default before anyone else (the transport, splice) uses the socket.
        _ = SetLowWater(wait.Fd, 1);
        wait.Handle!.DangerousRelease();
        wait.Complete(outcome);
    }

    private void CancelWait(Wait wait, ulong token)
    {
        lock (_lock)
        {
            var slot = (int)(uint)token;
            if ((uint)slot >= (uint)_slots.Length || !ReferenceEquals(_slots[slot], wait) || wait.Token != token)
            {
                return; // already completed (or re-armed for a later wait)
            }

            _slots[slot] = null;
        }

        Finish(wait, WaitOutcome.Failed, registered: true);
    }

    private void Return(Wait wait)
    {
        lock (_lock)
        {
            _pool.Push(wait);
        }
    }

    /// <summary>One pending wait; pooled, completed once per arming.</summary>
    private sealed class Wait(ReadableWaiter owner) : IValueTaskSource<WaitOutcome>
    {
        private ManualResetValueTaskSourceCore<WaitOutcome> _core = new() { RunContinuationsAsynchronously = true };
        private uint _generation;

        public SafeHandle? Handle { get; private set; }

        public int Fd { get; private set; }

        public long DeadlineMs { get; private set; }

        /// <summary>Slot in the low 32 bits, generation in the high: an event for an earlier arming never matches.</summary>
        public ulong Token { get; private set; }

        public short Version => _core.Version;

        public CancellationTokenRegistration Registration { get; set; }

        public void Cancel() => owner.CancelWait(this, Token);

        public void Arm(SafeHandle handle, int fd, long deadlineMs, int slot)
        {
            Handle = handle;
            Fd = fd;
            DeadlineMs = deadlineMs;
            _generation++;
            Token = ((ulong)_generation << 32) | (uint)slot;
        }

        public void Complete(WaitOutcome outcome) => _core.SetResult(outcome);

        public WaitOutcome GetResult(short token)
        {
            var result = _core.GetResult(token);
            Handle = null;
            // Dispose (not Unregister): waits for a cancel callback still running, which must read this arming's Token.
            Registration.Dispose();
            Registration = default;
            _core.Reset();
            owner.Return(this);
            return result;
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _core.OnCompleted(continuation, state, token, flags);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1303, Level = LogLevel.Error, Message = "Protocol detection waiter: epoll_wait failed (errno {Errno}); pending detections end as failed")]
        public static partial void EpollWaitFailed(ILogger logger, int errno);
    }
}

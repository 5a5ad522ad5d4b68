using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace Proxy.Core.Tcp.Splice;

/// <summary>
/// One dedicated thread that owns an epoll instance and drives every splice session assigned to it.
/// <code>
///   ForwardAsync ──Add──► command queue ──eventfd──► reactor thread
///                                                   │ epoll_wait (edge-triggered, both sockets of each session)
///                                                   │ event ─► session.Pump: splice in / splice out per direction
///                                                   │ idle sweep at the earliest possible deadline
///                                                   └ finish ─► close sockets, recycle empty pipes, complete task
/// </code>
/// Sockets are registered edge-triggered for IN|OUT|RDHUP: the session remembers "readable"/"writable" until a
/// splice returns EAGAIN, so no epoll_ctl is needed per operation. Pipes are not registered: the session knows
/// how many bytes each pipe holds. A session that keeps having work is cut after a fixed number of turns and
/// resumed after the next poll, so one fast connection cannot starve the others.
/// </summary>
internal sealed unsafe partial class SpliceReactor : IDisposable
{
    private const int MaxEvents = 256;
    private const int TurnsPerPump = 8;
    private const ulong WakeToken = ulong.MaxValue;
    private const uint SocketEvents = SpliceNative.EPOLLIN | SpliceNative.EPOLLOUT | SpliceNative.EPOLLRDHUP | SpliceNative.EPOLLET;

    private readonly FileDescriptorHandle _epoll;
    private readonly FileDescriptorHandle _wake;
    private readonly ConcurrentQueue<Command> _commands = new();
    private readonly int _maxPooledPipes;
    private readonly Stack<SplicePipe> _pipePool = new();
    private readonly ILogger _logger;
    private readonly Thread _thread;
    private List<SpliceSession> _retry = [];
    private List<SpliceSession> _retryRunning = [];
    private SpliceSession?[] _slots = new SpliceSession?[64];
    private uint[] _generations = new uint[64];
    private int[] _freeSlots = new int[64];
    private int _freeCount;
    private int _slotsUsed;
    private int _active;
    private long _nextSweepMs = long.MaxValue;
    private int _wakePending;
    private volatile bool _stopping;
    private volatile bool _stopped;

    public SpliceReactor(int index, int maxPooledPipes, ILogger logger)
    {
        _maxPooledPipes = maxPooledPipes;
        _logger = logger;
        int epfd = SpliceNative.EpollCreate1(SpliceNative.EPOLL_CLOEXEC);
        if (epfd < 0)
        {
            throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
        }

        _epoll = new FileDescriptorHandle(epfd);
        int efd = SpliceNative.EventFd(0, SpliceNative.EFD_CLOEXEC | SpliceNative.EFD_NONBLOCK);
        if (efd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _epoll.Dispose();
            throw new IOException($"eventfd failed: errno {errno}");
        }

        _wake = new FileDescriptorHandle(efd);
        if (SpliceNative.EpollControl(epfd, SpliceNative.EPOLL_CTL_ADD, efd, SpliceNative.EPOLLIN, WakeToken) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _wake.Dispose();
            _epoll.Dispose();
            throw new IOException($"epoll_ctl(eventfd) failed: errno {errno}");
        }

        _thread = new Thread(static state => ((SpliceReactor)state!).Run())
        {
            IsBackground = true,
            Name = $"splice-reactor-{index}",
        };
        _thread.UnsafeStart(this);
    }

    /// <summary>True once the reactor thread has stopped or is stopping.</summary>
    public bool IsStopping => _stopping;

    /// <summary>Sessions currently registered (read from any thread; approximate).</summary>
    public int ActiveSessions => Volatile.Read(ref _active);

    public void Add(SpliceSession session)
    {
        session.Reactor = this;
        Enqueue(new Command(session, CommandKind.Add));
        if (_stopped)
        {
            // Lost the race with Dispose: the thread is gone, so abort what it will never see.
            DrainAfterStop();
        }
    }

    public void RequestAbort(SpliceSession session) => Enqueue(new Command(session, CommandKind.Abort));

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
    }

    private void Enqueue(in Command command)
    {
        _commands.Enqueue(command);
        Wake();
    }

    private void Wake()
    {
        if (_stopped)
        {
            return;
        }

        // Only the first enqueue after the reactor drained the queue pays for the eventfd write.
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            // The ref count keeps the descriptor number from being closed (and reused) under the write.
            bool added = false;
            try
            {
                _wake.DangerousAddRef(ref added);
                ulong one = 1;
                _ = SpliceNative.Write(_wake.Fd, &one, sizeof(ulong));
            }
            catch (ObjectDisposedException)
            {
                // The reactor has stopped; Add() aborts the session itself.
            }
            finally
            {
                if (added)
                {
                    _wake.DangerousRelease();
                }
            }
        }
    }

    private void Run()
    {
        int eventSize = SpliceNative.EpollEventSize;
        int dataOffset = SpliceNative.EpollDataOffset;
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * eventSize));
        try
        {
            while (true)
            {
                int timeout = _retry.Count > 0 ? 0 : ComputeTimeout();
                int n = SpliceNative.EpollWait(_epoll.Fd, events, MaxEvents, timeout);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == SpliceNative.EINTR)
                    {
                        continue;
                    }

                    Log.EpollWaitFailed(_logger, errno);
                    break;
                }

                bool woken = false;
                for (int i = 0; i < n; i++)
                {
                    byte* ev = events + (i * eventSize);
                    uint flags = *(uint*)ev;
                    ulong data = *(ulong*)(ev + dataOffset);
                    if (data == WakeToken)
                    {
                        woken = true;
                        continue;
                    }

                    int slot = (int)((uint)data >> 1);
                    SpliceSession? session = (uint)slot < (uint)_slots.Length ? _slots[slot] : null;
                    if (session is null || session.Token != (data & ~1UL))
                    {
                        continue; // stale event of a session finished earlier in this batch
                    }

                    session.OnEvents((int)(data & 1), flags);
                    RunSession(session);
                }

                if (_retry.Count > 0)
                {
                    RunRetries();
                }

                if (woken)
                {
                    ulong value;
                    _ = SpliceNative.Read(_wake.Fd, &value, sizeof(ulong));
                    Volatile.Write(ref _wakePending, 0);
                    ProcessCommands();
                }

                if (_stopping)
                {
                    break;
                }

                if (_nextSweepMs != long.MaxValue && Environment.TickCount64 >= _nextSweepMs)
                {
                    Sweep();
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
            Shutdown();
        }
    }

    private int ComputeTimeout()
    {
        if (_nextSweepMs == long.MaxValue)
        {
            return -1;
        }

        long wait = _nextSweepMs - Environment.TickCount64;
        return wait <= 0 ? 0 : wait > int.MaxValue ? int.MaxValue : (int)wait;
    }

    private void RunRetries()
    {
        // Swap lists: sessions that still have work after this round are collected in the other one.
        (_retry, _retryRunning) = (_retryRunning, _retry);
        for (int i = 0; i < _retryRunning.Count; i++)
        {
            SpliceSession session = _retryRunning[i];
            session.InRetryList = false;
            RunSession(session);
        }

        _retryRunning.Clear();
    }

    private void RunSession(SpliceSession session)
    {
        if (session.Finished)
        {
            return;
        }

        PumpResult result;
        try
        {
            result = session.Pump(TurnsPerPump);
        }
        catch (Exception e)
        {
            // Only an observer can throw here; losing the reactor thread would hang every session on it.
            Log.SessionFailed(_logger, e);
            Finish(session, TcpForwardOutcome.Aborted);
            return;
        }

        switch (result)
        {
            case PumpResult.Idle:
                return;
            case PumpResult.Again:
                if (!session.InRetryList)
                {
                    session.InRetryList = true;
                    _retry.Add(session);
                }

                return;
            case PumpResult.Completed:
                Finish(session, TcpForwardOutcome.Completed);
                return;
            case PumpResult.DownstreamReset:
                Finish(session, TcpForwardOutcome.DownstreamReset);
                return;
            case PumpResult.UpstreamReset:
                Finish(session, TcpForwardOutcome.UpstreamReset);
                return;
        }
    }

    private void ProcessCommands()
    {
        while (_commands.TryDequeue(out Command command))
        {
            SpliceSession session = command.Session;
            if (command.Kind == CommandKind.Add)
            {
                Register(session);
            }
            else if (session.Slot >= 0 && !session.Finished)
            {
                Finish(session, TcpForwardOutcome.Aborted);
            }

            // An abort that overtakes its Add is seen by Register through session.AbortRequested.
        }
    }

    private void Register(SpliceSession session)
    {
        if (_stopping || session.AbortRequested)
        {
            session.Finished = true;
            session.CloseSockets(resetDownstream: true, resetUpstream: true);
            session.Cancellation.Unregister();
            session.Completion.TrySetResult(new TcpForwardResult(TcpForwardOutcome.Aborted, 0, 0));
            return;
        }

        SplicePipe? toUpstream = RentPipe(out int errno);
        SplicePipe? toDownstream = toUpstream is null ? null : RentPipe(out errno);
        if (toDownstream is null)
        {
            toUpstream?.Dispose();
            Log.PipeCreateFailed(_logger, errno);
            FailSetup(session, new IOException($"Cannot create a pipe for splice forwarding: errno {errno}."));
            return;
        }

        session.ToUpstreamPipe = toUpstream;
        session.ToDownstreamPipe = toDownstream;

        int slot = AllocateSlot();
        ulong token = ((ulong)_generations[slot] << 32) | ((uint)slot << 1);
        session.Slot = slot;
        session.Token = token;
        _slots[slot] = session;
        _active++;

        int epfd = _epoll.Fd;
        if (SpliceNative.EpollControl(epfd, SpliceNative.EPOLL_CTL_ADD, session.DownstreamFd, SocketEvents, token) != 0
            || SpliceNative.EpollControl(epfd, SpliceNative.EPOLL_CTL_ADD, session.UpstreamFd, SocketEvents, token | 1) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            Log.EpollAddFailed(_logger, errno);
            ReleaseSlot(session);
            ReturnPipes(session);
            FailSetup(session, new IOException($"Cannot register sockets with epoll: errno {errno}."));
            return;
        }

        long now = Environment.TickCount64;
        session.LastActivityMs = now;
        if (session.IdleTimeoutMs != long.MaxValue)
        {
            long deadline = now + session.IdleTimeoutMs;
            if (deadline < _nextSweepMs)
            {
                _nextSweepMs = deadline;
            }
        }

        // Bytes may already be waiting (server-speaks-first, data sent before the hand-over): try right away.
        session.DownstreamReadable = session.DownstreamWritable = true;
        session.UpstreamReadable = session.UpstreamWritable = true;
        RunSession(session);
    }

    private static void FailSetup(SpliceSession session, Exception error)
    {
        session.Finished = true;
        session.CloseSockets(resetDownstream: true, resetUpstream: true);
        session.Cancellation.Unregister();
        session.Completion.TrySetException(error);
    }

    private void Finish(SpliceSession session, TcpForwardOutcome outcome)
    {
        session.Finished = true;
        ReleaseSlot(session);
        bool resetDownstream = outcome is TcpForwardOutcome.UpstreamReset or TcpForwardOutcome.IdleTimeout or TcpForwardOutcome.Aborted;
        bool resetUpstream = outcome is TcpForwardOutcome.DownstreamReset or TcpForwardOutcome.IdleTimeout or TcpForwardOutcome.Aborted;

        // close() removes the descriptors from this epoll instance; no EPOLL_CTL_DEL needed.
        session.CloseSockets(resetDownstream, resetUpstream);
        ReturnPipes(session);
        session.Cancellation.Unregister();
        session.Completion.TrySetResult(new TcpForwardResult(outcome, session.BytesToUpstream, session.BytesToDownstream));
    }

    private void Sweep()
    {
        long now = Environment.TickCount64;
        long next = long.MaxValue;
        for (int i = 0; i < _slotsUsed; i++)
        {
            SpliceSession? session = _slots[i];
            if (session is null || session.IdleTimeoutMs == long.MaxValue)
            {
                continue;
            }

            long deadline = session.LastActivityMs + session.IdleTimeoutMs;
            if (deadline <= now)
            {
                Finish(session, TcpForwardOutcome.IdleTimeout);
            }
            else if (deadline < next)
            {
                next = deadline;
            }
        }

        // Activity only moves deadlines later, so this is a lower bound: sweeping then is never late.
        _nextSweepMs = next;
    }

    private SplicePipe? RentPipe(out int errno)
    {
        if (_pipePool.TryPop(out SplicePipe? pipe))
        {
            errno = 0;
            return pipe;
        }

        return SplicePipe.TryCreate(0, out errno);
    }

    private void ReturnPipes(SpliceSession session)
    {
        ReturnPipe(session.ToUpstreamPipe, session.ToUpstream.PipeBytes == 0);
        ReturnPipe(session.ToDownstreamPipe, session.ToDownstream.PipeBytes == 0);
        session.ToUpstreamPipe = null;
        session.ToDownstreamPipe = null;
    }

    private void ReturnPipe(SplicePipe? pipe, bool empty)
    {
        if (pipe is null)
        {
            return;
        }

        // Only a pipe known to be empty can serve another session; one that still holds bytes is closed.
        if (empty && _pipePool.Count < _maxPooledPipes && !_stopping)
        {
            _pipePool.Push(pipe);
        }
        else
        {
            pipe.Dispose();
        }
    }

    private int AllocateSlot()
    {
        if (_freeCount > 0)
        {
            return _freeSlots[--_freeCount];
        }

        if (_slotsUsed == _slots.Length)
        {
            int size = _slots.Length * 2;
            Array.Resize(ref _slots, size);
            Array.Resize(ref _generations, size);
            Array.Resize(ref _freeSlots, size);
        }

        return _slotsUsed++;
    }

    private void ReleaseSlot(SpliceSession session)
    {
        int slot = session.Slot;
        if (slot < 0 || _slots[slot] != session)
        {
            return;
        }

        _slots[slot] = null;
        _generations[slot]++;
        _freeSlots[_freeCount++] = slot;
        _active--;
    }

    private void Shutdown()
    {
        _stopping = true;
        // Abort what is still running, including sessions whose Add raced with the stop.
        for (int i = 0; i < _slotsUsed; i++)
        {
            if (_slots[i] is { } session)
            {
                Finish(session, TcpForwardOutcome.Aborted);
            }
        }

        while (_pipePool.TryPop(out SplicePipe? pipe))
        {
            pipe.Dispose();
        }

        _stopped = true;
        DrainAfterStop();
        _wake.Dispose();
        _epoll.Dispose();
    }

    private void DrainAfterStop()
    {
        // Register() takes its abort path once _stopping is set: no pipe, no epoll, only this session's sockets.
        while (_commands.TryDequeue(out Command command))
        {
            if (command.Kind == CommandKind.Add)
            {
                Register(command.Session);
            }
        }
    }

    private enum CommandKind : byte
    {
        Add,
        Abort,
    }

    private readonly record struct Command(SpliceSession Session, CommandKind Kind);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Critical, Message = "Splice reactor stopped: epoll_wait failed with errno {Errno}; its sessions are aborted.")]
        public static partial void EpollWaitFailed(ILogger logger, int errno);

        [LoggerMessage(EventId = 2102, Level = LogLevel.Error, Message = "Splice forwarding could not create a pipe (errno {Errno}); the connection was reset.")]
        public static partial void PipeCreateFailed(ILogger logger, int errno);

        [LoggerMessage(EventId = 2104, Level = LogLevel.Error, Message = "A splice session failed unexpectedly and was aborted.")]
        public static partial void SessionFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 2103, Level = LogLevel.Error, Message = "Splice forwarding could not register sockets with epoll (errno {Errno}); the connection was reset.")]
        public static partial void EpollAddFailed(ILogger logger, int errno);
    }
}

using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Proxy.Core.Tcp.Splice;

/// <summary>
/// State of one forwarding session: two sockets, one pipe per direction and the readiness each socket last
/// reported. Everything except construction and <see cref="RequestAbort"/> runs on the owning reactor's thread.
/// </summary>
internal sealed class SpliceSession
{
    private const uint SpliceInFlags = SpliceNative.SPLICE_F_MOVE | SpliceNative.SPLICE_F_NONBLOCK;

    // No SPLICE_F_MORE on the way out: it corks the socket like MSG_MORE and would hold back the last segment of a
    // request/response exchange; the pipe already hands the kernel large batches.
    private const uint SpliceOutFlags = SpliceNative.SPLICE_F_MOVE | SpliceNative.SPLICE_F_NONBLOCK;

    private readonly Socket _downstream;
    private readonly Socket _upstream;
    private readonly IForwardObserver? _observer;
    private bool _downstreamRefAdded;
    private bool _upstreamRefAdded;
    private volatile bool _abortRequested;

    private readonly int _maxPipeCapacity;

    public SpliceSession(Socket downstream, Socket upstream, TcpForwardOptions options, IForwardObserver? observer, int maxPipeCapacity)
    {
        _maxPipeCapacity = maxPipeCapacity;
        _downstream = downstream;
        _upstream = upstream;
        _observer = observer;
        TimeSpan idle = options.IdleTimeout;
        IdleTimeoutMs = idle == Timeout.InfiniteTimeSpan || idle <= TimeSpan.Zero ? long.MaxValue : (long)Math.Ceiling(idle.TotalMilliseconds);

        // Keep the descriptors alive even if a caller disposes a Socket while the reactor still uses the number.
        downstream.SafeHandle.DangerousAddRef(ref _downstreamRefAdded);
        upstream.SafeHandle.DangerousAddRef(ref _upstreamRefAdded);
        DownstreamFd = (int)downstream.SafeHandle.DangerousGetHandle();
        UpstreamFd = (int)upstream.SafeHandle.DangerousGetHandle();
    }

    public int DownstreamFd { get; }

    public int UpstreamFd { get; }

    public long IdleTimeoutMs { get; }

    public TaskCompletionSource<TcpForwardResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CancellationTokenRegistration Cancellation { get; set; }

    public SpliceReactor? Reactor { get; set; }

    public bool AbortRequested => _abortRequested;

    // ---- reactor-thread state ----
    public int Slot { get; set; } = -1;

    public ulong Token { get; set; }

    public bool Finished { get; set; }

    public bool InRetryList { get; set; }

    public long LastActivityMs { get; set; }

    public SplicePipe? ToUpstreamPipe { get; set; }

    public SplicePipe? ToDownstreamPipe { get; set; }

    public DirectionState ToUpstream;
    public DirectionState ToDownstream;
    public bool DownstreamReadable;
    public bool DownstreamWritable;
    public bool UpstreamReadable;
    public bool UpstreamWritable;
    public bool DownstreamErrorPending;
    public bool UpstreamErrorPending;

    public long BytesToUpstream => ToUpstream.Bytes;

    public long BytesToDownstream => ToDownstream.Bytes;

    public bool PipesEmpty => ToUpstream.PipeBytes == 0 && ToDownstream.PipeBytes == 0;

    /// <summary>Called from a cancellation callback on any thread.</summary>
    public void RequestAbort()
    {
        _abortRequested = true;
        Reactor?.RequestAbort(this);
    }

    /// <summary>Records readiness from an epoll event for one side (0 = downstream, 1 = upstream).</summary>
    public void OnEvents(int side, uint events)
    {
        bool error = (events & (SpliceNative.EPOLLERR | SpliceNative.EPOLLHUP)) != 0;
        bool readable = error || (events & (SpliceNative.EPOLLIN | SpliceNative.EPOLLRDHUP)) != 0;
        bool writable = error || (events & SpliceNative.EPOLLOUT) != 0;
        if (side == 0)
        {
            DownstreamReadable |= readable;
            DownstreamWritable |= writable;
            DownstreamErrorPending |= (events & SpliceNative.EPOLLERR) != 0;
        }
        else
        {
            UpstreamReadable |= readable;
            UpstreamWritable |= writable;
            UpstreamErrorPending |= (events & SpliceNative.EPOLLERR) != 0;
        }
    }

    /// <summary>
    /// Moves bytes both ways until nothing can progress without new readiness, the session ends, or the budget of
    /// turns is spent (then <see cref="PumpResult.Again"/>: the reactor runs it again after polling).
    /// </summary>
    public PumpResult Pump(int turns)
    {
        if (DownstreamErrorPending)
        {
            DownstreamErrorPending = false;
            if (SpliceNative.TakeSocketError(DownstreamFd) != 0)
            {
                return PumpResult.DownstreamReset;
            }
        }

        if (UpstreamErrorPending)
        {
            UpstreamErrorPending = false;
            if (SpliceNative.TakeSocketError(UpstreamFd) != 0)
            {
                return PumpResult.UpstreamReset;
            }
        }

        bool moved = false;
        for (int turn = 0; turn < turns; turn++)
        {
            Step up = StepDirection(ref ToUpstream, ToUpstreamPipe!, DownstreamFd, ref DownstreamReadable, UpstreamFd, ref UpstreamWritable, toUpstream: true);
            if (up >= Step.SourceFailed)
            {
                return up == Step.SourceFailed ? PumpResult.DownstreamReset : PumpResult.UpstreamReset;
            }

            Step down = StepDirection(ref ToDownstream, ToDownstreamPipe!, UpstreamFd, ref UpstreamReadable, DownstreamFd, ref DownstreamWritable, toUpstream: false);
            if (down >= Step.SourceFailed)
            {
                return down == Step.SourceFailed ? PumpResult.UpstreamReset : PumpResult.DownstreamReset;
            }

            if (ToUpstream.Done && ToDownstream.Done)
            {
                return PumpResult.Completed;
            }

            if (up == Step.Idle && down == Step.Idle)
            {
                if (moved)
                {
                    LastActivityMs = Environment.TickCount64;
                }

                return PumpResult.Idle;
            }

            moved = true;
        }

        LastActivityMs = Environment.TickCount64;
        return PumpResult.Again;
    }

    /// <summary>One splice in (socket -> pipe) and one splice out (pipe -> socket) for a direction.</summary>
    private Step StepDirection(ref DirectionState d, SplicePipe pipe, int sourceFd, ref bool sourceReadable, int destinationFd, ref bool destinationWritable, bool toUpstream)
    {
        Step step = Step.Idle;
        if (!d.SourceEof && sourceReadable)
        {
            int room = pipe.Capacity - d.PipeBytes;
            if (room > 0)
            {
                nint n = SpliceNative.Splice(sourceFd, 0, pipe.WriteFd, 0, (nuint)room, SpliceInFlags);
                if (n > 0)
                {
                    d.PipeBytes += (int)n;
                    step = Step.Progress;
                    if (n == room && pipe.Capacity < _maxPipeCapacity)
                    {
                        // A bulk flow filled the pipe: give it the larger pipe (fewer wake-ups and syscalls per byte).
                        // Short request/response sessions never get here and keep the cheap default pipe.
                        _ = pipe.TryGrow(_maxPipeCapacity);
                    }
                }
                else if (n == 0)
                {
                    d.SourceEof = true;
                    step = Step.Progress;
                }
                else
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == SpliceNative.EAGAIN)
                    {
                        // EAGAIN means "socket empty" or "pipe has no free slot" (a pipe has capacity/4096 slots and
                        // each small segment takes one, so it can be full well below its byte capacity). Ask the
                        // socket only while the pipe could still grow; otherwise retry once the pipe drained a little.
                        if (d.PipeBytes > 0 && pipe.CanGrow && pipe.Capacity < _maxPipeCapacity
                            && SpliceNative.BytesAvailable(sourceFd) > 0 && pipe.TryGrow(_maxPipeCapacity))
                        {
                            step = Step.Progress;
                        }
                        else
                        {
                            sourceReadable = false;
                            d.RetryReadAfterDrain = d.PipeBytes > 0;
                        }
                    }
                    else if (errno == SpliceNative.EINTR)
                    {
                        step = Step.Progress;
                    }
                    else
                    {
                        return Step.SourceFailed;
                    }
                }
            }
            else
            {
                d.RetryReadAfterDrain = true;
            }
        }

        if (d.PipeBytes > 0 && destinationWritable)
        {
            nint n = SpliceNative.Splice(pipe.ReadFd, 0, destinationFd, 0, (nuint)d.PipeBytes, SpliceOutFlags);
            if (n > 0)
            {
                int count = (int)n;
                d.PipeBytes -= count;
                d.Bytes += count;
                step = Step.Progress;
                if (d.RetryReadAfterDrain)
                {
                    d.RetryReadAfterDrain = false;
                    sourceReadable = true;
                }

                if (_observer is { } observer)
                {
                    if (toUpstream)
                    {
                        observer.OnBytesToUpstream(count);
                    }
                    else
                    {
                        observer.OnBytesToDownstream(count);
                    }
                }
            }
            else
            {
                int errno = n < 0 ? Marshal.GetLastPInvokeError() : SpliceNative.EAGAIN;
                if (errno == SpliceNative.EAGAIN)
                {
                    destinationWritable = false;
                }
                else if (errno == SpliceNative.EINTR)
                {
                    step = Step.Progress;
                }
                else
                {
                    return Step.DestinationFailed;
                }
            }
        }

        if (d.SourceEof && d.PipeBytes == 0 && !d.Done)
        {
            // Half-close: the source sent FIN and everything before it was delivered; pass the FIN on. ENOTCONN
            // (destination already reset) surfaces as EPOLLERR on that socket, so the result is not needed here.
            _ = SpliceNative.Shutdown(destinationFd, SpliceNative.SHUT_WR);
            d.Done = true;
            step = Step.Progress;
        }

        return step;
    }

    /// <summary>Closes both sockets; <paramref name="resetDownstream"/>/<paramref name="resetUpstream"/> send RST instead of FIN.</summary>
    public void CloseSockets(bool resetDownstream, bool resetUpstream)
    {
        if (resetDownstream)
        {
            SpliceNative.SetLingerZero(DownstreamFd);
        }

        if (resetUpstream)
        {
            SpliceNative.SetLingerZero(UpstreamFd);
        }

        if (_downstreamRefAdded)
        {
            _downstreamRefAdded = false;
            _downstream.SafeHandle.DangerousRelease();
        }

        if (_upstreamRefAdded)
        {
            _upstreamRefAdded = false;
            _upstream.SafeHandle.DangerousRelease();
        }

        _downstream.Dispose();
        _upstream.Dispose();
    }

    internal struct DirectionState
    {
        public int PipeBytes;
        public long Bytes;
        public bool SourceEof;
        public bool Done;
        public bool RetryReadAfterDrain;
    }

    private enum Step
    {
        Idle,
        Progress,
        SourceFailed,
        DestinationFailed,
    }
}

/// <summary>What a session's turn ended with.</summary>
internal enum PumpResult
{
    /// <summary>Waiting for readiness.</summary>
    Idle,
    /// <summary>Still has work; its turn budget ran out.</summary>
    Again,
    Completed,
    DownstreamReset,
    UpstreamReset,
}

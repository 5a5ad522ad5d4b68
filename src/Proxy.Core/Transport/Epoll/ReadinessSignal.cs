using System.Threading.Tasks.Sources;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// "The socket became readable (or writable) since you last looked": set by the event loop, awaited by one
/// waiter at a time (the connection's receive loop, or its send loop), without allocating.
/// <code>
///   state  Idle ──Set──► Set ──Wait (consumes, completes synchronously)──► Idle
///          Idle ──Wait──► Waiting ──Set (completes the waiter inline, on the setter's thread)──► Idle
/// </code>
/// A signal is a hint, never a promise: the waiter's next system call may still find nothing (EAGAIN) and wait
/// again. It is never lost: a Set between the waiter's failed call and its Wait leaves the state Set.
/// </summary>
internal sealed class ReadinessSignal : IValueTaskSource
{
    private const int Idle = 0;
    private const int Signaled = 1;
    private const int Waiting = 2;

    private ManualResetValueTaskSourceCore<bool> _core;
    private int _state;

    public ReadinessSignal()
    {
        // The continuation (the connection's loop) runs on the thread that calls Set: the event loop.
        _core.RunContinuationsAsynchronously = false;
    }

    /// <summary>Whether a Set is pending (for tests).</summary>
    public bool IsSet => Volatile.Read(ref _state) == Signaled;

    /// <summary>Records readiness; completes the waiter, if any, on this thread.</summary>
    public void Set()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if (state == Signaled)
            {
                return;
            }

            if (state == Idle)
            {
                if (Interlocked.CompareExchange(ref _state, Signaled, Idle) == Idle)
                {
                    return;
                }

                continue;
            }

            if (Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting)
            {
                _core.SetResult(true);
                return;
            }
        }
    }

    /// <summary>Completes at once if a Set is pending (consuming it), else at the next Set. One waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        if (Interlocked.CompareExchange(ref _state, Idle, Signaled) == Signaled)
        {
            return ValueTask.CompletedTask;
        }

        _core.Reset();
        if (Interlocked.CompareExchange(ref _state, Waiting, Idle) == Idle)
        {
            return new ValueTask(this, _core.Version);
        }

        // A Set arrived between the two steps: consume it.
        Volatile.Write(ref _state, Idle);
        return ValueTask.CompletedTask;
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

using System.Runtime.CompilerServices;

namespace Proxy.Core.Transport;

/// <summary>
/// A non-recursive spin lock for critical sections of a few field updates that are normally entered by one thread
/// (a connection's event loop): entering costs one interlocked operation, leaving a plain store.
/// <see cref="System.Threading.Lock"/> costs an interlocked operation each way plus a thread-id lookup, which on the
/// HTTP/2 path (dozens of short sections per forwarded stream) was about a twentieth of the proxy's CPU.
/// </summary>
/// <remarks>
/// Rules, because a waiter spins: never wait, block or run foreign code (continuations, callbacks) while holding it,
/// and never enter it again on the thread that holds it. Debug builds check the last rule and throw
/// <see cref="LockRecursionException"/>; release builds would spin forever. A waiter spins with
/// <see cref="SpinWait"/>, which yields the core after a few spins, so a holder that was preempted gets it back.
/// </remarks>
public sealed class SpinLatch
{
    private int _state;
#if DEBUG
    private int _owner;
#endif

    /// <summary>Enters; dispose the scope (a <c>using</c>) to leave.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Scope EnterScope()
    {
        Enter();
        return new Scope(this);
    }

    /// <summary>Enters (pair with <see cref="Exit"/>). Inlined: NativeAOT kept it a call (no profile to tell it is hot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
#if DEBUG
        if (Volatile.Read(ref _owner) == Environment.CurrentManagedThreadId)
        {
            throw new LockRecursionException("A SpinLatch was entered again by the thread that holds it.");
        }
#endif
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            EnterContended();
        }
#if DEBUG
        _owner = Environment.CurrentManagedThreadId;
#endif
    }

    /// <summary>Leaves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit()
    {
#if DEBUG
        if (_owner != Environment.CurrentManagedThreadId)
        {
            throw new SynchronizationLockException("A SpinLatch was left by a thread that does not hold it.");
        }

        _owner = 0;
#endif
        Volatile.Write(ref _state, 0);
    }

    private void EnterContended()
    {
        var spinner = default(SpinWait);
        do
        {
            // Spins, then yields the core (never sleeps a whole millisecond: sections are a few instructions long).
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        while (Volatile.Read(ref _state) != 0 || Interlocked.CompareExchange(ref _state, 1, 0) != 0);
    }

    /// <summary>Leaves the latch when disposed.</summary>
    public readonly ref struct Scope
    {
        private readonly SpinLatch _latch;

        internal Scope(SpinLatch latch) => _latch = latch;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Dispose() => _latch.Exit();
    }
}

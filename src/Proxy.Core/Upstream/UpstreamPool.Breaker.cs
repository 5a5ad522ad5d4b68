using Proxy.Core.Addresses;
using Proxy.Core.Limits;

namespace Proxy.Core.Upstream;

/// <summary>
/// Pending requests at a service's circuit breaker limit <c>maxConnections</c> (Envoy's pending queue; README
/// "Circuit breaking"). A rent that needs a new connection while the service has <c>maxConnections</c> open waits,
/// holding its endpoint slot (as a connect would), for whichever comes first:
/// <list type="number">
/// <item>a connection to its endpoint returned reusable to this pool: <see cref="EndpointPool.ReturnIdle"/> hands it
/// over (oldest waiter first, after the waiters of the endpoint's own limit) and the waiter's endpoint slot is freed;</item>
/// <item>a <c>maxConnections</c> slot: a counted connection of the service closed anywhere (any pool, opaque TCP);
/// <see cref="CircuitBreaker.ConnectionClosed"/> grants it to the service's oldest waiter, which connects with it. A
/// connection returned reusable while the service has waiters but none for that endpoint is closed instead of kept
/// idle, so its slot reaches them;</item>
/// <item>the wait timeout (<see cref="UpstreamPoolOptions.WaitTimeout"/>, the connect timeout; the request's own
/// deadline or connect timeout cancels earlier): fails with <see cref="ConnectFailureCause.Overflow"/> naming
/// <c>maxConnections</c> and the time waited, counted as an overflow;</item>
/// <item>the caller's token (client gone, deadline): leaves both queues at once, <see cref="OperationCanceledException"/>.</item>
/// </list>
/// Nothing here runs when a slot is free (<see cref="CircuitBreaker.TryTakeConnectionSlot"/>, no allocation); a wait
/// allocates its waiter and two list nodes.
/// </summary>
public sealed partial class UpstreamPool
{
    private async ValueTask<PoolRentResult> WaitForConnectionSlotAsync(EndpointPool endpoint, UpstreamAddress address, CircuitBreaker breaker, CancellationToken cancellationToken)
    {
        // The caller holds a slot of the endpoint; every path below keeps it (connecting with it), hands it on or gives it back.
        var started = _time.GetTimestamp();
        var counted = false;
        while (true)
        {
            if (breaker.TryTakeConnectionSlot())
            {
                return await OpenAsync(endpoint, address, breaker, cancellationToken).ConfigureAwait(false);
            }

            var left = _waitTimeout == Timeout.InfiniteTimeSpan ? _waitTimeout : _waitTimeout - _time.GetElapsedTime(started);
            if (left <= TimeSpan.Zero && left != Timeout.InfiniteTimeSpan)
            {
                endpoint.ReleaseSlot();
                return ConnectionsOverflow(address, breaker, started);
            }

            var waiter = new BreakerWaiter(breaker);
            switch (endpoint.AddBreakerWaiter(waiter, out var idle))
            {
                case BreakerWait.Idle:
                    // A connection came back idle between the rent's look at the stack and now: take it.
                    _metrics?.PoolConnectionsIdle.Add(-1);
                    if (TryReuse(idle!))
                    {
                        return PoolRentResult.Success(idle!);
                    }

                    // Discarded: its endpoint slot is ours, its maxConnections slot is freed when its close ends.
                    continue;
                case BreakerWait.Disposed:
                    endpoint.ReleaseSlot();
                    throw new ObjectDisposedException(nameof(UpstreamPool));
            }

            if (!counted)
            {
                counted = true;
                breaker.ReportConnectionWait();
            }

            // An idle connection of the service to another endpoint holds a slot no one here may use: close one.
            MakeRoom(endpoint, breaker);

            Handoff handoff;
            try
            {
                waiter.BreakerNode = breaker.EnqueueConnectionWaiter(waiter);

                // Served by a return before its node was known (Complete could not take it out of the breaker's
                // queue): take it out now, or the service would count a waiter that no longer waits.
                Interlocked.MemoryBarrier();
                if (waiter.Task.IsCompleted)
                {
                    breaker.RemoveConnectionWaiter(waiter.BreakerNode);
                }

                waiter.Arm(_time, left, cancellationToken);
                handoff = await waiter.Task.ConfigureAwait(false);
            }
            finally
            {
                await waiter.DisarmAsync().ConfigureAwait(false);
                endpoint.RemoveBreakerWaiter(waiter);
                breaker.RemoveConnectionWaiter(waiter.BreakerNode);
            }

            switch (handoff.Kind)
            {
                case HandoffKind.Connection:
                    // Handed over by a return to this endpoint, which freed our own endpoint slot.
                    if (TryReuse(handoff.Connection!))
                    {
                        return PoolRentResult.Success(handoff.Connection!);
                    }

                    // It died while coming back: its endpoint slot is ours; wait again for a way to connect.
                    continue;
                case HandoffKind.Slot:
                    return await OpenAsync(endpoint, address, breaker, cancellationToken).ConfigureAwait(false);
                case HandoffKind.TimedOut:
                    endpoint.ReleaseSlot();
                    return ConnectionsOverflow(address, breaker, started);
                case HandoffKind.Cancelled:
                    endpoint.ReleaseSlot();
                    throw new OperationCanceledException(cancellationToken);
                default:
                    endpoint.ReleaseSlot();
                    throw new ObjectDisposedException(nameof(UpstreamPool));
            }
        }
    }

    /// <summary>
    /// Closes the oldest idle connection of <paramref name="breaker"/>'s service kept for another endpoint of this pool, if
    /// any: its slot, freed when the close ends, goes to the service's oldest waiter. One per wait.
    /// </summary>
    private void MakeRoom(EndpointPool waiting, CircuitBreaker breaker)
    {
        foreach (var pair in _endpoints)
        {
            if (pair.Value != waiting && pair.Value.TryEvictIdle(breaker, out var idle))
            {
                _metrics?.PoolConnectionsIdle.Add(-1);
                Discard(idle, CauseBreakerWaiting);
                return;
            }
        }
    }

    /// <summary>The wait for a <c>maxConnections</c> slot ran out: an overflow, counted, saying how long it waited.</summary>
    private PoolRentResult ConnectionsOverflow(UpstreamAddress address, CircuitBreaker breaker, long started)
    {
        breaker.ReportOverflow(CircuitBreakerLimit.MaxConnections);
        var waitedMs = _time.GetElapsedTime(started).TotalMilliseconds;
        return PoolRentResult.Failed(new ConnectFailure(
            address,
            ConnectFailureCause.Overflow,
            $"{breaker.Describe(CircuitBreakerLimit.MaxConnections)} and none came free while the request waited {waitedMs:0} ms"));
    }

    private enum BreakerWait
    {
        Added,
        Idle,
        Disposed,
    }

    private sealed partial class EndpointPool
    {
        // Rents of this endpoint waiting for a maxConnections slot of the service (each holds an endpoint slot), oldest first.
        private readonly LinkedList<BreakerWaiter> _breakerWaiters = new();

        /// <summary>
        /// Queues <paramref name="waiter"/> for a connection returned to this endpoint; <see cref="BreakerWait.Idle"/>
        /// (with the top idle connection, the caller's own slot given back) when one came back meanwhile.
        /// </summary>
        public BreakerWait AddBreakerWaiter(BreakerWaiter waiter, out PooledConnection? idle)
        {
            idle = null;
            lock (_lock)
            {
                // DisposeAsync sets the flag before Close takes this lock: a waiter added here is failed by Close.
                if (Volatile.Read(ref owner._disposed) != 0)
                {
                    return BreakerWait.Disposed;
                }

                if (_idleCount > 0)
                {
                    idle = PopIdleUnsynchronized();
                    ReleaseSlotUnsynchronized();
                    return BreakerWait.Idle;
                }

                waiter.EndpointNode = _breakerWaiters.AddLast(waiter);
                return BreakerWait.Added;
            }
        }

        /// <summary>Takes the oldest idle connection (bottom of the stack) when it counts in <paramref name="breaker"/>.</summary>
        public bool TryEvictIdle(CircuitBreaker breaker, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out PooledConnection? idle)
        {
            lock (_lock)
            {
                if (_retired || _idleCount == 0 || _idle[_bottom]!.Breaker != breaker)
                {
                    idle = null;
                    return false;
                }

                idle = _idle[_bottom]!;
                _idle[_bottom] = null;
                _bottom = (_bottom + 1) & (_idle.Length - 1);
                _idleCount--;
                ReleaseSlotUnsynchronized();
                return true;
            }
        }

        public void RemoveBreakerWaiter(BreakerWaiter waiter)
        {
            lock (_lock)
            {
                if (waiter.EndpointNode is { List: not null } node)
                {
                    _breakerWaiters.Remove(node);
                }
            }
        }

        /// <summary>Hands a connection returned reusable to the oldest rent waiting for a slot of the service; frees that rent's endpoint slot.</summary>
        private bool TryHandToBreakerWaiterUnsynchronized(PooledConnection connection)
        {
            while (_breakerWaiters.First is { } node)
            {
                _breakerWaiters.RemoveFirst();
                if (node.Value.Complete(new Handoff(HandoffKind.Connection, connection)))
                {
                    // The connection brings its own endpoint slot; the waiter's is no longer needed (no other waiter
                    // of this endpoint's own limit is queued: the connection would have gone to it first).
                    ReleaseSlotUnsynchronized();
                    return true;
                }
            }

            return false;
        }

        private void FailBreakerWaitersUnsynchronized()
        {
            while (_breakerWaiters.First is { } node)
            {
                _breakerWaiters.RemoveFirst();
                node.Value.Complete(new Handoff(HandoffKind.Disposed, null));
            }
        }
    }

    /// <summary>
    /// A rent waiting for a <c>maxConnections</c> slot or a connection of its endpoint; completes exactly once, and then
    /// leaves the breaker's queue at once (<see cref="Complete"/>), so the service's waiter count, which decides whether a
    /// returned connection is closed to make room, only counts rents still waiting. Lock order: an endpoint's lock, then
    /// the breaker's (the breaker never takes an endpoint's).
    /// </summary>
    private sealed class BreakerWaiter(CircuitBreaker breaker) : TaskCompletionSource<Handoff>(TaskCreationOptions.RunContinuationsAsynchronously), IConnectionSlotWaiter
    {
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;

        public LinkedListNode<BreakerWaiter>? EndpointNode { get; set; }

        public LinkedListNode<IConnectionSlotWaiter>? BreakerNode { get; set; }

        // Under the breaker's lock, which has just taken this waiter out of its queue.
        public bool TryGrantSlot() => TrySetResult(new Handoff(HandoffKind.Slot, null));

        /// <summary>Completes the wait (false: it already ended) and takes it out of the breaker's queue.</summary>
        public bool Complete(Handoff handoff)
        {
            if (!TrySetResult(handoff))
            {
                return false;
            }

            breaker.RemoveConnectionWaiter(BreakerNode);
            return true;
        }

        public void Arm(TimeProvider time, TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (timeout != Timeout.InfiniteTimeSpan)
            {
                _timer = time.CreateTimer(static s => ((BreakerWaiter)s!).Complete(new Handoff(HandoffKind.TimedOut, null)), this, timeout, Timeout.InfiniteTimeSpan);
            }

            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static s => ((BreakerWaiter)s!).Complete(new Handoff(HandoffKind.Cancelled, null)), this);
            }
        }

        public ValueTask DisarmAsync()
        {
            _timer?.Dispose();
            return _registration.DisposeAsync();
        }
    }
}

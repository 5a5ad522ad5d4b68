namespace Proxy.Core.Limits;

/// <summary>A request waiting in a <see cref="CircuitBreaker"/>'s FIFO for a <c>maxConnections</c> slot.</summary>
public interface IConnectionSlotWaiter
{
    /// <summary>
    /// Offers the waiter a slot, under the breaker's lock (so: no blocking, no re-entry into the breaker), at most once.
    /// True: the waiter took it and owns one counted connection now (it connects, or gives it back with
    /// <see cref="CircuitBreaker.ConnectionClosed"/>). False: it no longer waits (timed out, cancelled, served by a
    /// returned connection) and the slot goes to the next one.
    /// </summary>
    bool TryGrantSlot();
}

/// <summary>
/// The pending queue of <c>maxConnections</c> (Envoy's pending requests): requests that need a new connection while
/// the service has <c>maxConnections</c> open wait here, first come first served, and a closed connection's slot goes
/// to the oldest one (<see cref="ConnectionClosed"/>) instead of being freed. The pools also hand a connection returned
/// reusable straight to a waiter of its endpoint (UpstreamPool), so the queue is the slow path of both.
/// </summary>
/// <remarks>
/// Cost: with nobody waiting, taking and giving back a slot stay one Interlocked word each (plus one volatile read of
/// the waiter count); a wait takes a lock and allocates its node. Lost wake-ups: a closer decrements, then reads the
/// waiter count; a waiter publishes the count, then tries for a slot (both sides fenced by Interlocked), so either the
/// closer sees the waiter and grants the slot, or the waiter sees the slot free.
/// </remarks>
public sealed partial class CircuitBreaker
{
    private readonly Lock _waitLock = new();
    private readonly LinkedList<IConnectionSlotWaiter> _connectionQueue = new();
    private int _connectionWaiters;

    /// <summary>Requests waiting now for a <c>maxConnections</c> slot (or a connection returned to their endpoint).</summary>
    public int ConnectionWaiters => Volatile.Read(ref _connectionWaiters);

    /// <summary>
    /// A slot for a new pooled connection when one is free and nobody is queued for one (waiters go first); a refusal
    /// is not counted as an overflow (the caller waits: <see cref="EnqueueConnectionWaiter"/>). No lock, no allocation.
    /// </summary>
    public bool TryTakeConnectionSlot() => Volatile.Read(ref _connectionWaiters) == 0 && TryTakeConnectionSlotUncounted();

    /// <summary>
    /// Queues <paramref name="waiter"/> last; it may be granted a slot before this returns (one came free meanwhile).
    /// The node is for <see cref="RemoveConnectionWaiter"/>, which the waiter calls once it no longer waits.
    /// </summary>
    public LinkedListNode<IConnectionSlotWaiter> EnqueueConnectionWaiter(IConnectionSlotWaiter waiter)
    {
        ArgumentNullException.ThrowIfNull(waiter);
        LinkedListNode<IConnectionSlotWaiter> node;
        lock (_waitLock)
        {
            node = _connectionQueue.AddLast(waiter);
            Volatile.Write(ref _connectionWaiters, _connectionQueue.Count);
        }

        GrantConnectionSlots();
        return node;
    }

    /// <summary>Takes a waiter out of the queue (no-op when it was already granted a slot or removed).</summary>
    public void RemoveConnectionWaiter(LinkedListNode<IConnectionSlotWaiter>? node)
    {
        if (node is null)
        {
            return;
        }

        lock (_waitLock)
        {
            if (node.List is not null)
            {
                _connectionQueue.Remove(node);
                Volatile.Write(ref _connectionWaiters, _connectionQueue.Count);
            }
        }
    }

    /// <summary>Called once per request that had to wait for a <c>maxConnections</c> slot (metrics); set by the composer.</summary>
    public Action<CircuitBreaker>? OnConnectionWait { get; set; }

    /// <summary>A request starts waiting for a <c>maxConnections</c> slot (counted once per request).</summary>
    public void ReportConnectionWait() => OnConnectionWait?.Invoke(this);

    /// <summary>Counts a refusal decided by the caller (e.g. a wait for a connection that timed out) like the breaker's own.</summary>
    public void ReportOverflow(CircuitBreakerLimit limit) => OnOverflow?.Invoke(this, limit);

    private bool TryTakeConnectionSlotUncounted()
    {
        if (Interlocked.Increment(ref _connections) <= Config.MaxConnections)
        {
            return true;
        }

        Interlocked.Decrement(ref _connections);
        return false;
    }

    /// <summary>Hands free slots to the oldest waiters until either runs out.</summary>
    private void GrantConnectionSlots()
    {
        lock (_waitLock)
        {
            while (_connectionQueue.First is { } first && TryTakeConnectionSlotUncounted())
            {
                _connectionQueue.RemoveFirst();
                Volatile.Write(ref _connectionWaiters, _connectionQueue.Count);
                if (!first.Value.TryGrantSlot())
                {
                    // It stopped waiting a moment ago: the slot is free again for the next one.
                    Interlocked.Decrement(ref _connections);
                }
            }
        }
    }
}

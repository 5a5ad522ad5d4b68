using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Limits;
using Proxy.Core.Metrics;

namespace Proxy.Core.Upstream;

/// <summary>
/// Keep-alive connection pools, one per upstream endpoint address, over an <see cref="IUpstreamConnector"/>.
/// <para>What it does and why:</para>
/// <list type="number">
/// <item><b>LIFO reuse.</b> Idle connections form a stack: a rent takes the most recently returned one. That one is
/// the least likely to have been closed by the upstream's own idle timer, and the ones at the bottom age out
/// (<see cref="UpstreamPoolOptions.IdleTimeout"/>) instead of all being kept barely warm by round-robin reuse.</item>
/// <item><b>Liveness check before reuse, without blocking.</b> A connection taken from the stack is handed out only if
/// its <c>ConnectionClosed</c> token has not fired and <c>Transport.Input.TryRead</c> finds nothing: an idle HTTP/1.1
/// upstream has no business sending bytes, so data, end of stream (the upstream's FIN), a reset or a cancelled read
/// all mean it is closing or broken, and it is discarded (cause <c>closed_by_upstream</c>) and the next one tried.
/// Connections older than the idle timeout are discarded on the way too. This keeps the reuse race (the upstream
/// closes while we send a request on the connection) to the window in which its FIN is still in flight; the
/// forwarder retries that case when it is safe.</item>
/// <item><b>Sweep.</b> A timer (<see cref="UpstreamPoolOptions.TimeProvider"/>) every min(idle timeout / 2, 5 s)
/// closes idle connections that expired or that the upstream closed, and forgets endpoints with no connection.</item>
/// <item><b>Limits.</b> <see cref="UpstreamPoolOptions.MaxConnectionsPerEndpoint"/> counts in-use, idle and
/// connecting connections. At the limit a rent waits in a FIFO queue; a returned connection (or the slot of a closed
/// one) goes to the oldest waiter directly. A wait longer than <see cref="UpstreamPoolOptions.WaitTimeout"/> fails
/// with <see cref="ConnectFailureCause.PoolExhausted"/>; the caller's token cancels it.
/// <see cref="UpstreamPoolOptions.MaxIdlePerEndpoint"/> bounds the stack: a return to a full stack closes the oldest
/// idle connection (cause <c>overflow</c>). Over a <see cref="Limits.CircuitBreakingConnector"/>, a new connection also
/// needs a slot of its service's circuit breaker <c>maxConnections</c>; at that limit the rent waits too, for a
/// connection returned to its endpoint or a freed slot (UpstreamPool.Breaker.cs).</item>
/// <item><b>Cost.</b> Renting an idle connection and returning it allocate nothing: one dictionary lookup, one short
/// lock per endpoint, a synchronously completed <see cref="ValueTask{TResult}"/>, the same <see cref="PooledConnection"/>
/// object for the life of the connection. Waiting and connecting allocate (they are the slow path anyway).</item>
/// <item><b>Closing.</b> Discarded connections are closed gracefully (<c>DisposeAsync</c>: pending output is sent,
/// then FIN) in the background, failures logged; a close still unfinished after
/// <see cref="UpstreamPoolOptions.CloseTimeout"/> (the upstream stopped reading) is reset. A renter that wants a reset
/// at once calls <c>Abort()</c> before returning the connection with <c>reusable: false</c>.</item>
/// </list>
/// <para>Liveness is read from the application's input pipe. With a wrapping middleware (TLS) whose pipe only
/// shows bytes once someone reads, an upstream close is noticed by the renter's first read instead.</para>
/// </summary>
public sealed partial class UpstreamPool : IUpstreamPool, IEndpointRetirement, IAsyncDisposable
{
    private const string CauseClosedByUpstream = "closed_by_upstream";
    private const string CauseIdleTimeout = "idle_timeout";
    private const string CauseNotReusable = "not_reusable";
    private const string CauseOverflow = "overflow";
    private const string CauseRetired = "retired";
    private const string CauseBreakerWaiting = "breaker_waiting";

    private static readonly TimeSpan DefaultWaitTimeout = TimeSpan.FromSeconds(10);

    private readonly IUpstreamConnector _connector;
    private readonly CircuitBreakingConnector? _breakers;
    private readonly UpstreamPoolOptions _options;
    private readonly TimeProvider _time;
    private readonly ProxyMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<UpstreamAddress, EndpointPool> _endpoints = new();
    private readonly TimeSpan _waitTimeout;
    private readonly long _idleTimeoutStamps;
    private readonly ITimer _sweepTimer;
    private readonly Lock _sweepLock = new();
    private int _disposed;

    public UpstreamPool(IUpstreamConnector connector, UpstreamPoolOptions? options = null, ProxyMetrics? metrics = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(connector);
        _options = options ?? new UpstreamPoolOptions();
        _options.Validate();
        _connector = connector;
        _breakers = connector as CircuitBreakingConnector;
        _time = _options.TimeProvider;
        _metrics = metrics;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<UpstreamPool>();
        _waitTimeout = _options.WaitTimeout ?? (connector is UpstreamConnector c ? c.Options.ConnectTimeout : DefaultWaitTimeout);

        // Idle ages are compared in the clock's own timestamp units: no TimeSpan math per rent.
        (_idleTimeoutStamps, var period) = IdleSweep.For(_options.IdleTimeout, _time);
        SweepPeriod = period;
        _sweepTimer = _time.CreateTimer(static s => ((UpstreamPool)s!).Sweep(), this, period, period);
    }

    public UpstreamPoolOptions Options => _options;

    /// <summary>How often the idle sweep runs: min(<see cref="UpstreamPoolOptions.IdleTimeout"/> / 2, 5 s).</summary>
    public TimeSpan SweepPeriod { get; }

    /// <inheritdoc/>
    public ValueTask<PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<PoolRentResult>(cancellationToken);
        }

        while (true)
        {
            var endpoint = GetEndpoint(address);
            switch (endpoint.Acquire(out var idle, out var waiter))
            {
                case Acquired.Idle:
                    _metrics?.PoolConnectionsIdle.Add(-1);
                    if (TryReuse(idle!))
                    {
                        return new ValueTask<PoolRentResult>(PoolRentResult.Success(idle!));
                    }

                    endpoint.ReleaseSlot();
                    continue;
                case Acquired.Slot:
                    return ConnectAsync(endpoint, address, cancellationToken);
                case Acquired.Wait:
                    return WaitAsync(endpoint, waiter!, address, cancellationToken);
                case Acquired.Exhausted:
                    return new ValueTask<PoolRentResult>(Exhausted(address));
                default:
                    // Retired by the sweep (no connection left) or closed by DisposeAsync: look the endpoint up again.
                    ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
                    _endpoints.TryRemove(new KeyValuePair<UpstreamAddress, EndpointPool>(address, endpoint));
                    continue;
            }
        }
    }

    /// <inheritdoc/>
    public void Return(PooledConnection connection, bool reusable)
    {
        ArgumentNullException.ThrowIfNull(connection);

        // The connection's own endpoint state, even when its address was retired (and maybe came back with a new one).
        var endpoint = connection.PoolEntry as EndpointPool;
        if (endpoint is null && !_endpoints.TryGetValue(connection.Address, out endpoint))
        {
            // The pool was disposed (it forgets its endpoints) while this connection was out.
            CloseInBackground(connection.Connection);
            return;
        }

        if (!reusable || Volatile.Read(ref _disposed) != 0)
        {
            Discard(connection, CauseNotReusable);
            endpoint.ReleaseSlot();
            return;
        }

        connection.UseCount++;
        connection.IdleSince = _time.GetTimestamp();
        switch (endpoint.ReturnIdle(connection, out var evicted))
        {
            case Returned.Idle:
                _metrics?.PoolConnectionsIdle.Add(1);
                break;
            case Returned.IdleEvictedOldest:
                // +1 for this one, -1 for the evicted one: the idle count does not move.
                Discard(evicted!, CauseOverflow);
                break;
            case Returned.Overflow:
                Discard(connection, CauseOverflow);
                break;
            case Returned.MakeRoom:
                // Requests of the service wait for a maxConnections slot elsewhere: closing this one gives them its slot.
                Discard(connection, CauseBreakerWaiting);
                break;
            case Returned.Closed:
                if (Volatile.Read(ref _disposed) != 0)
                {
                    CloseInBackground(connection.Connection);
                }
                else
                {
                    Discard(connection, CauseRetired);
                }

                break;
            default:
                // Handed to a waiter.
                break;
        }
    }

    /// <summary>
    /// The endpoint left service discovery: its idle connections are closed now, each connection in use is closed when
    /// it comes back, rents waiting for a slot get one as those close. A later rent for the address starts a new entry.
    /// </summary>
    public void Retire(UpstreamAddress address)
    {
        if (Volatile.Read(ref _disposed) != 0 || !_endpoints.TryRemove(address, out var endpoint))
        {
            return;
        }

        List<PooledConnection> idle = [];
        endpoint.Retire(idle);
        Log.Retired(_logger, address, idle.Count);
        if (idle.Count > 0)
        {
            _metrics?.PoolConnectionsIdle.Add(-idle.Count);
            foreach (var connection in idle)
            {
                Discard(connection, CauseRetired);
            }
        }
    }

    /// <summary>Counts for one endpoint (zeros if the pool has no entry for it).</summary>
    public UpstreamPoolStats GetStats(UpstreamAddress address) =>
        _endpoints.TryGetValue(address, out var endpoint) ? endpoint.GetStats() : default;

    /// <summary>Closes every idle connection (and waits for that), fails waiting rents; connections out are closed when returned.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _sweepTimer.Dispose();
        List<PooledConnection> idle = [];
        foreach (var pair in _endpoints)
        {
            pair.Value.Close(idle);
        }

        _endpoints.Clear();
        if (idle.Count > 0)
        {
            _metrics?.PoolConnectionsIdle.Add(-idle.Count);
            var closing = new Task[idle.Count];
            for (var i = 0; i < closing.Length; i++)
            {
                closing[i] = CloseAsync(idle[i].Connection);
            }

            await Task.WhenAll(closing).ConfigureAwait(false);
        }
    }

    /// <summary>Runs the idle sweep now (the timer calls it every <see cref="SweepPeriod"/>).</summary>
    internal void Sweep()
    {
        if (Volatile.Read(ref _disposed) != 0 || !_sweepLock.TryEnter())
        {
            return;
        }

        try
        {
            var now = _time.GetTimestamp();
            List<(PooledConnection Connection, string Cause)>? discards = null;
            foreach (var pair in _endpoints)
            {
                if (pair.Value.Sweep(now, ref discards))
                {
                    _endpoints.TryRemove(pair);
                }
            }

            if (discards is not null)
            {
                _metrics?.PoolConnectionsIdle.Add(-discards.Count);
                foreach (var (connection, cause) in discards)
                {
                    Discard(connection, cause);
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A timer callback must not throw (it would take the process down).
            Log.SweepFailed(_logger, ex);
        }
        finally
        {
            _sweepLock.Exit();
        }
    }

    private EndpointPool GetEndpoint(UpstreamAddress address)
    {
        if (_endpoints.TryGetValue(address, out var endpoint))
        {
            return endpoint;
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _endpoints.GetOrAdd(address, static (_, pool) => new EndpointPool(pool), this);
    }

    /// <summary>Whether <paramref name="connection"/>, just taken from the idle stack or handed back to a waiter, can carry a request; discards it if not.</summary>
    private bool TryReuse(PooledConnection connection)
    {
        if (_idleTimeoutStamps != long.MaxValue && _time.GetTimestamp() - connection.IdleSince >= _idleTimeoutStamps)
        {
            Discard(connection, CauseIdleTimeout);
            return false;
        }

        if (!IsAlive(connection.Connection))
        {
            Discard(connection, CauseClosedByUpstream);
            return false;
        }

        connection.IsReused = true;
        _metrics?.PoolConnectionsReused.Add(1);
        return true;
    }

    /// <summary>
    /// True when the idle connection shows no sign of closing: its closed token has not fired and its input holds
    /// no bytes, no end of stream, no error. Never blocks: <c>TryRead</c> only looks at what the receive loop buffered.
    /// </summary>
    internal static bool IsAlive(ConnectionContext connection)
    {
        if (connection.ConnectionClosed.IsCancellationRequested)
        {
            return false;
        }

        try
        {
            var input = connection.Transport.Input;
            if (!input.TryRead(out var result))
            {
                // Nothing buffered, not completed: the healthy case.
                return true;
            }

            var healthy = result.Buffer.IsEmpty && !result.IsCompleted && !result.IsCanceled;
            input.AdvanceTo(result.Buffer.Start);
            return healthy;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The input ended with a reset or abort, the renter completed it, or the socket was taken over.
            return false;
        }
    }

    /// <summary>
    /// A new connection for a rent holding a slot of <paramref name="endpoint"/>. A service with circuit breakers needs
    /// a <c>maxConnections</c> slot too; at that limit the rent waits (UpstreamPool.Breaker.cs).
    /// </summary>
    private ValueTask<PoolRentResult> ConnectAsync(EndpointPool endpoint, UpstreamAddress address, CancellationToken cancellationToken)
    {
        var breaker = _breakers?.BreakerFor(address);
        return breaker is null || breaker.TryTakeConnectionSlot()
            ? OpenAsync(endpoint, address, breaker, cancellationToken)
            : WaitForConnectionSlotAsync(endpoint, address, breaker, cancellationToken);
    }

    /// <summary>Connects holding a slot of <paramref name="endpoint"/> and, with <paramref name="breaker"/>, one of its <c>maxConnections</c>.</summary>
    private async ValueTask<PoolRentResult> OpenAsync(EndpointPool endpoint, UpstreamAddress address, CircuitBreaker? breaker, CancellationToken cancellationToken)
    {
        // The caller holds a slot of the endpoint: give it back on every path that opens no connection.
        UpstreamConnectResult result;
        try
        {
            if (_breakers is { } breakers)
            {
                result = await breakers.ConnectHoldingSlotAsync(address, breaker, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                result = await _connector.TryConnectAsync(address, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            endpoint.ReleaseSlot();
            throw;
        }

        if (!result.IsSuccess)
        {
            endpoint.ReleaseSlot();
            return PoolRentResult.Failed(result.Failure);
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            endpoint.ReleaseSlot();
            await CloseAsync(result.Connection!).ConfigureAwait(false);
            throw new ObjectDisposedException(nameof(UpstreamPool));
        }

        _metrics?.PoolConnectionsCreated.Add(1);
        Log.Created(_logger, address);
        return PoolRentResult.Success(new PooledConnection(address, result.Connection!) { PoolEntry = endpoint, Breaker = breaker });
    }

    private async ValueTask<PoolRentResult> WaitAsync(EndpointPool endpoint, Waiter waiter, UpstreamAddress address, CancellationToken cancellationToken)
    {
        waiter.Arm(_time, _waitTimeout, cancellationToken);
        Handoff handoff;
        try
        {
            handoff = await waiter.Task.ConfigureAwait(false);
        }
        finally
        {
            await waiter.DisarmAsync().ConfigureAwait(false);
        }

        switch (handoff.Kind)
        {
            case HandoffKind.Connection:
                if (TryReuse(handoff.Connection!))
                {
                    return PoolRentResult.Success(handoff.Connection!);
                }

                // It died while coming back: its slot is ours, open a new one with it.
                return await ConnectAsync(endpoint, address, cancellationToken).ConfigureAwait(false);
            case HandoffKind.Slot:
                return await ConnectAsync(endpoint, address, cancellationToken).ConfigureAwait(false);
            case HandoffKind.TimedOut:
                return Exhausted(address);
            case HandoffKind.Cancelled:
                throw new OperationCanceledException(cancellationToken);
            default:
                throw new ObjectDisposedException(nameof(UpstreamPool));
        }
    }

    private PoolRentResult Exhausted(UpstreamAddress address)
    {
        var max = _options.MaxConnectionsPerEndpoint;
        var waitMs = _waitTimeout.TotalMilliseconds;
        Log.Exhausted(_logger, address, max, waitMs);
        return PoolRentResult.Failed(new ConnectFailure(
            address,
            ConnectFailureCause.PoolExhausted,
            $"all {max} connections to {address} in use, none free within {waitMs:0} ms"));
    }

    private void Discard(PooledConnection connection, string cause)
    {
        _metrics?.PoolConnectionsDiscarded.Add(1, new KeyValuePair<string, object?>("cause", cause));
        Log.Discarded(_logger, connection.Address, cause, connection.UseCount);
        CloseInBackground(connection.Connection);
    }

    private void CloseInBackground(ConnectionContext connection) => _ = CloseAsync(connection);

    private async Task CloseAsync(ConnectionContext connection)
    {
        try
        {
            var closing = connection.DisposeAsync();
            if (closing.IsCompleted || _options.CloseTimeout == Timeout.InfiniteTimeSpan)
            {
                await closing.ConfigureAwait(false);
                return;
            }

            // Still sending what the renter wrote: bounded, then reset (an upstream that stopped reading would
            // otherwise keep the socket and this task forever).
            var pending = closing.AsTask();
            try
            {
                await pending.WaitAsync(_options.CloseTimeout, _time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Log.CloseTimedOut(_logger, connection.ConnectionId, _options.CloseTimeout.TotalMilliseconds);
                connection.Abort(new ConnectionAbortedException("The pool reset a connection whose graceful close did not finish in time."));
                await pending.ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.CloseFailed(_logger, connection.ConnectionId, ex.Message);
        }
    }

    private enum Acquired
    {
        Retired,
        Idle,
        Slot,
        Wait,
        Exhausted,
    }

    private enum Returned
    {
        HandedToWaiter,
        Idle,
        IdleEvictedOldest,
        Overflow,
        MakeRoom,
        Closed,
    }

    private enum HandoffKind
    {
        Connection,
        Slot,
        TimedOut,
        Cancelled,
        Disposed,
    }

    private readonly record struct Handoff(HandoffKind Kind, PooledConnection? Connection);

    /// <summary>
    /// One endpoint's state: an idle stack (a ring buffer, so the top is popped for reuse and the bottom, the oldest,
    /// for eviction and expiry), the count of open connections (idle + rented + connecting) and the FIFO of waiting
    /// rents. Every member takes <see cref="_lock"/> for a few instructions; nothing is awaited or disposed under it.
    /// Invariant: waiters are queued only while the stack is empty, and a freed connection or slot goes to a waiter first.
    /// </summary>
    private sealed partial class EndpointPool(UpstreamPool owner)
    {
        private readonly Lock _lock = new();
        private readonly LinkedList<Waiter> _waiters = new();
        private readonly int _maxConnections = owner._options.MaxConnectionsPerEndpoint;
        private readonly int _maxIdle = owner._options.MaxIdlePerEndpoint;

        // Power-of-two ring: index = (_bottom + i) & (_idle.Length - 1); grows up to the idle limit.
        private PooledConnection?[] _idle = new PooledConnection?[4];
        private int _bottom;
        private int _idleCount;
        private int _open;
        private bool _retired;

        public Acquired Acquire(out PooledConnection? idle, out Waiter? waiter)
        {
            idle = null;
            waiter = null;
            lock (_lock)
            {
                if (_retired)
                {
                    return Acquired.Retired;
                }

                if (_idleCount > 0)
                {
                    idle = PopIdleUnsynchronized();
                    return Acquired.Idle;
                }

                if (_maxConnections == 0 || _open < _maxConnections)
                {
                    _open++;
                    return Acquired.Slot;
                }

                if (owner._waitTimeout == TimeSpan.Zero)
                {
                    return Acquired.Exhausted;
                }

                waiter = new Waiter(this);
                waiter.Node = _waiters.AddLast(waiter);
                return Acquired.Wait;
            }
        }

        /// <summary>LIFO: takes the top of the stack, the most recently returned connection (there is one). Under the lock.</summary>
        private PooledConnection PopIdleUnsynchronized()
        {
            var index = (_bottom + _idleCount - 1) & (_idle.Length - 1);
            var idle = _idle[index]!;
            _idle[index] = null;
            _idleCount--;
            return idle;
        }

        /// <summary>A connection of this endpoint was closed or never opened: its slot goes to the oldest waiter, else is freed.</summary>
        public void ReleaseSlot()
        {
            lock (_lock)
            {
                ReleaseSlotUnsynchronized();
            }
        }

        /// <summary>
        /// A connection back reusable: to the oldest rent waiting on this endpoint (its own limit, then the service's
        /// <c>maxConnections</c>), else kept idle, or closed when requests of the service still wait for a connection
        /// slot (for other endpoints or pools: read under this lock, after this endpoint's waiters were served).
        /// </summary>
        public Returned ReturnIdle(PooledConnection connection, out PooledConnection? evicted)
        {
            evicted = null;
            lock (_lock)
            {
                if (_retired)
                {
                    // Retired or disposed: never kept; the slot goes to a rent still waiting on this entry.
                    ReleaseSlotUnsynchronized();
                    return Returned.Closed;
                }

                if (TryHandToWaiterUnsynchronized(new Handoff(HandoffKind.Connection, connection))
                    || TryHandToBreakerWaiterUnsynchronized(connection))
                {
                    return Returned.HandedToWaiter;
                }

                if (connection.Breaker is { ConnectionWaiters: > 0 })
                {
                    _open--;
                    return Returned.MakeRoom;
                }

                if (_idleCount >= _maxIdle)
                {
                    if (_idleCount == 0)
                    {
                        // MaxIdlePerEndpoint is 0: nothing is kept.
                        _open--;
                        return Returned.Overflow;
                    }

                    // Full: the oldest idle connection (bottom of the stack) makes room.
                    evicted = _idle[_bottom];
                    _idle[_bottom] = null;
                    _bottom = (_bottom + 1) & (_idle.Length - 1);
                    _idleCount--;
                    _open--;
                }
                else if (_idleCount == _idle.Length)
                {
                    GrowUnsynchronized();
                }

                _idle[(_bottom + _idleCount) & (_idle.Length - 1)] = connection;
                _idleCount++;
                return evicted is null ? Returned.Idle : Returned.IdleEvictedOldest;
            }
        }

        /// <summary>
        /// Removes expired idle connections (from the bottom: the oldest) and ones the upstream closed (anywhere);
        /// retires the endpoint when it has no connection and no waiter left. Returns true when retired.
        /// </summary>
        public bool Sweep(long now, ref List<(PooledConnection Connection, string Cause)>? discards)
        {
            lock (_lock)
            {
                if (_retired)
                {
                    return false;
                }

                var mask = _idle.Length - 1;
                var timeout = owner._idleTimeoutStamps;
                while (_idleCount > 0 && timeout != long.MaxValue && now - _idle[_bottom]!.IdleSince >= timeout)
                {
                    (discards ??= []).Add((_idle[_bottom]!, CauseIdleTimeout));
                    _idle[_bottom] = null;
                    _bottom = (_bottom + 1) & mask;
                    _idleCount--;
                    ReleaseSlotUnsynchronized();
                }

                // Compact in place, keeping the stack order of the live ones.
                var kept = 0;
                for (var i = 0; i < _idleCount; i++)
                {
                    var connection = _idle[(_bottom + i) & mask]!;
                    if (IsAlive(connection.Connection))
                    {
                        _idle[(_bottom + kept) & mask] = connection;
                        kept++;
                    }
                    else
                    {
                        (discards ??= []).Add((connection, CauseClosedByUpstream));
                    }
                }

                for (var i = kept; i < _idleCount; i++)
                {
                    _idle[(_bottom + i) & mask] = null;
                    ReleaseSlotUnsynchronized();
                }

                _idleCount = kept;
                if (_open == 0 && _waiters.Count == 0)
                {
                    _retired = true;
                    return true;
                }

                return false;
            }
        }

        /// <summary>Retire: no more idle keeping; moves the idle connections to <paramref name="idle"/> (their slots go to waiters).</summary>
        public void Retire(List<PooledConnection> idle)
        {
            lock (_lock)
            {
                _retired = true;
                MoveIdleUnsynchronized(idle);

                // Waiters exist only while the stack is empty, so this hands nothing over in practice; kept for the invariant.
                var count = _idleCount;
                _idleCount = 0;
                for (var i = 0; i < count; i++)
                {
                    ReleaseSlotUnsynchronized();
                }
            }
        }

        /// <summary>Moves the idle connections (oldest first) to <paramref name="idle"/>, leaving their slots empty; the count is the caller's to settle. Under the lock.</summary>
        private void MoveIdleUnsynchronized(List<PooledConnection> idle)
        {
            var mask = _idle.Length - 1;
            for (var i = 0; i < _idleCount; i++)
            {
                var index = (_bottom + i) & mask;
                idle.Add(_idle[index]!);
                _idle[index] = null;
            }
        }

        /// <summary>DisposeAsync: retires the endpoint, moves its idle connections to <paramref name="idle"/>, fails its waiters.</summary>
        public void Close(List<PooledConnection> idle)
        {
            lock (_lock)
            {
                _retired = true;
                MoveIdleUnsynchronized(idle);

                _open -= _idleCount;
                _idleCount = 0;
                while (_waiters.First is { } node)
                {
                    _waiters.RemoveFirst();
                    node.Value.TrySetResult(new Handoff(HandoffKind.Disposed, null));
                }

                FailBreakerWaitersUnsynchronized();
            }
        }

        public void RemoveWaiter(Waiter waiter)
        {
            lock (_lock)
            {
                if (waiter.Node is { List: not null } node)
                {
                    _waiters.Remove(node);
                }
            }
        }

        public UpstreamPoolStats GetStats()
        {
            lock (_lock)
            {
                return new UpstreamPoolStats(_open, _idleCount, _waiters.Count + _breakerWaiters.Count);
            }
        }

        private void ReleaseSlotUnsynchronized()
        {
            if (!TryHandToWaiterUnsynchronized(new Handoff(HandoffKind.Slot, null)))
            {
                _open--;
            }
        }

        private bool TryHandToWaiterUnsynchronized(Handoff handoff)
        {
            while (_waiters.First is { } node)
            {
                _waiters.RemoveFirst();

                // Fails when the waiter timed out or was cancelled a moment ago: try the next one.
                // Continuations run asynchronously (the waiter's option), never under this lock.
                if (node.Value.TrySetResult(handoff))
                {
                    return true;
                }
            }

            return false;
        }

        private void GrowUnsynchronized()
        {
            var grown = new PooledConnection?[_idle.Length * 2];
            var mask = _idle.Length - 1;
            for (var i = 0; i < _idleCount; i++)
            {
                grown[i] = _idle[(_bottom + i) & mask];
            }

            _idle = grown;
            _bottom = 0;
        }
    }

    /// <summary>A rent waiting for a connection or slot of a full endpoint; completes exactly once.</summary>
    private sealed class Waiter(EndpointPool owner) : TaskCompletionSource<Handoff>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;

        public LinkedListNode<Waiter>? Node { get; set; }

        public void Arm(TimeProvider time, TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (timeout != Timeout.InfiniteTimeSpan)
            {
                _timer = time.CreateTimer(static s => ((Waiter)s!).Finish(HandoffKind.TimedOut), this, timeout, Timeout.InfiniteTimeSpan);
            }

            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static s => ((Waiter)s!).Finish(HandoffKind.Cancelled), this);
            }
        }

        public ValueTask DisarmAsync()
        {
            _timer?.Dispose();
            return _registration.DisposeAsync();
        }

        private void Finish(HandoffKind kind)
        {
            if (TrySetResult(new Handoff(kind, null)))
            {
                owner.RemoveWaiter(this);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1111, Level = LogLevel.Debug, Message = "Opened a pooled connection to {Endpoint}")]
        public static partial void Created(ILogger logger, UpstreamAddress endpoint);

        [LoggerMessage(EventId = 1112, Level = LogLevel.Debug, Message = "Closed a pooled connection to {Endpoint} ({Cause}) after {UseCount} exchanges")]
        public static partial void Discarded(ILogger logger, UpstreamAddress endpoint, string cause, int useCount);

        [LoggerMessage(EventId = 1113, Level = LogLevel.Debug, Message = "Pool for {Endpoint} exhausted: {Max} connections in use, none free within {WaitMs} ms")]
        public static partial void Exhausted(ILogger logger, UpstreamAddress endpoint, int max, double waitMs);

        [LoggerMessage(EventId = 1114, Level = LogLevel.Debug, Message = "Closing pooled connection {ConnectionId} failed: {Reason}")]
        public static partial void CloseFailed(ILogger logger, string connectionId, string reason);

        [LoggerMessage(EventId = 1115, Level = LogLevel.Error, Message = "Upstream pool idle sweep failed")]
        public static partial void SweepFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 1117, Level = LogLevel.Debug, Message = "Endpoint {Endpoint} retired from the pool: {Idle} idle connections closed, busy ones close when returned")]
        public static partial void Retired(ILogger logger, UpstreamAddress endpoint, int idle);

        [LoggerMessage(EventId = 1116, Level = LogLevel.Debug, Message = "Pooled connection {ConnectionId} did not close within {CloseTimeoutMs} ms (the upstream stopped reading): reset")]
        public static partial void CloseTimedOut(ILogger logger, string connectionId, double closeTimeoutMs);
    }
}

/// <summary>One endpoint's pool counts: <paramref name="Open"/> = idle + rented + connecting.</summary>
public readonly record struct UpstreamPoolStats(int Open, int Idle, int Waiting)
{
    /// <summary>Rented or being connected.</summary>
    public int InUse => Open - Idle;
}

using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Client;

namespace Proxy.Http.Http2.Upstream;

/// <summary>
/// HTTP/2 (h2c, prior knowledge) connections to upstream endpoints, multiplexed: an <see cref="IUpstreamPool"/> whose
/// "connections" are single HTTP/2 streams (<see cref="Http2UpstreamExchange"/>) that speak HTTP/1.1 bytes to the
/// forwarder. See README.md in this folder.
/// <code>
/// RentAsync(endpoint) ─► first open connection with a free stream slot (TryOpenStream) ─► exchange
///                     ─► none, a connect in flight ─► wait for it (its failure is ours)
///                     ─► none, below MaxConnectionsPerEndpoint ─► connect + preface + SETTINGS, await the server's SETTINGS
///                            (HandshakeTimeout; anything else: ConnectFailureCause.ProtocolError) ─► exchange
///                     ─► none, at the limit ─► wait for a slot (WaitTimeout ─► PoolExhausted)
/// Return(exchange) ─► stream reset (CANCEL) unless it completed; slot free ─► next waiter; exchange object reused
/// GOAWAY ─► the connection leaves the list (in-flight streams finish on it) ─► the next rent opens a new one
/// sweep (min(IdleTimeout / 2, 5 s)) ─► connections without streams for IdleTimeout are closed
/// keepalive (per connection, Http2ClientConnection.Keepalive.cs) ─► no answer to a PING ─► closed like a GOAWAY, plus a
///                     warning and proxy_http2_keepalive_timeouts_total{service}; the transport is aborted if the close hangs
/// </code>
/// Lock order: an endpoint's lock, then a client connection's own lock (inside <see cref="Http2ClientConnection.TryOpenStream"/>).
/// </summary>
public sealed partial class Http2UpstreamPool : IUpstreamPool, IEndpointRetirement, IAsyncDisposable
{
    private const string CauseIdleTimeout = "idle_timeout";
    private const string CauseGoAway = "goaway";
    private const string CauseClosed = "closed";
    private const string CauseRetired = "retired";
    private const string CauseKeepaliveTimeout = "keepalive_timeout";

    private readonly IUpstreamConnector _connector;
    private readonly Http2UpstreamPoolOptions _options;
    private readonly TimeProvider _time;
    private readonly ProxyMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<UpstreamAddress, EndpointState> _endpoints = new();
    private readonly ConcurrentQueue<Http2UpstreamExchange> _freeExchanges = new();
    private readonly long _idleTimeoutStamps;
    private readonly ITimer _sweepTimer;
    private int _freeCount;
    private long _connectionsOpened;
    private int _disposed;

    /// <summary>Creates the pool over <paramref name="connector"/> (TCP, plus any client middleware it runs).</summary>
    public Http2UpstreamPool(IUpstreamConnector connector, Http2UpstreamPoolOptions? options = null, ProxyMetrics? metrics = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(connector);
        _options = options ?? new Http2UpstreamPoolOptions();
        var errors = _options.Validate();
        if (errors.Count != 0)
        {
            throw new ArgumentException("Invalid HTTP/2 upstream pool options: " + string.Join(" ", errors), nameof(options));
        }

        _connector = connector;
        _time = _options.TimeProvider;
        _metrics = metrics;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<Http2UpstreamPool>();
        RequestParser = new Http1RequestHeadParser(_options.RequestParser);
        (_idleTimeoutStamps, var period) = IdleSweep.For(_options.IdleTimeout, _time);
        SweepPeriod = period;
        _sweepTimer = _time.CreateTimer(static s => ((Http2UpstreamPool)s!).Sweep(), this, period, period);
    }

    /// <summary>The options the pool runs with.</summary>
    public Http2UpstreamPoolOptions Options => _options;

    /// <summary>How often idle connections are looked for: min(<see cref="Http2UpstreamPoolOptions.IdleTimeout"/> / 2, 5 s).</summary>
    public TimeSpan SweepPeriod { get; }

    internal Http1RequestHeadParser RequestParser { get; }

    /// <summary>HTTP/2 connections to <paramref name="address"/> now taking streams (not draining); for tests and diagnostics.</summary>
    public int ConnectionCount(UpstreamAddress address)
    {
        if (!_endpoints.TryGetValue(address, out var endpoint))
        {
            return 0;
        }

        using (endpoint.Lock.EnterScope())
        {
            return endpoint.Connections.Count;
        }
    }

    /// <summary>HTTP/2 connections opened so far (all endpoints); for tests and diagnostics.</summary>
    public long ConnectionsOpened => Volatile.Read(ref _connectionsOpened);

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
            var endpoint = _endpoints.GetOrAdd(address, static a => new EndpointState(a));
            using (endpoint.Lock.EnterScope())
            {
                if (endpoint.Retired)
                {
                    // The sweep forgot this endpoint (nothing open) after we looked it up: look again.
                    continue;
                }

                if (TryOpenUnsynchronized(endpoint, out var result))
                {
                    return new ValueTask<PoolRentResult>(result);
                }

                // Marked busy so the sweep keeps the endpoint while this rent connects or waits.
                endpoint.PendingRents++;
            }

            return RentSlowAsync(endpoint, cancellationToken);
        }
    }

    /// <inheritdoc/>
    public void Return(PooledConnection connection, bool reusable)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (connection.Connection is not Http2UpstreamExchange exchange)
        {
            throw new ArgumentException("Not a connection of this pool.", nameof(connection));
        }

        var owner = exchange.Owner!;
        var endpoint = exchange.Endpoint!;
        exchange.Finish();
        var close = false;
        using (endpoint.Lock.EnterScope())
        {
            owner.Streams--;
            if (owner.Streams == 0)
            {
                owner.IdleSince = _time.GetTimestamp();

                // The endpoint was retired while this stream ran: its last stream closes the connection.
                close = endpoint.Retired && owner.CloseWhenIdle && !owner.ClosedByPool;
                owner.ClosedByPool |= close;
            }
        }

        if (close)
        {
            _ = CloseAsync(owner, CauseRetired);
            return;
        }

        WakeOne(endpoint);
    }

    /// <summary>
    /// The endpoint left service discovery: its connections take no new streams; idle ones close now (GOAWAY), busy ones
    /// when their last stream ends. Rents waiting on it look again (a later rent for the address starts a new entry).
    /// </summary>
    public void Retire(UpstreamAddress address)
    {
        if (Volatile.Read(ref _disposed) != 0 || !_endpoints.TryRemove(address, out var endpoint))
        {
            return;
        }

        List<Http2PooledConnection>? idle = null;
        List<TaskCompletionSource>? wake = null;
        using (endpoint.Lock.EnterScope())
        {
            endpoint.Retired = true;
            foreach (var c in endpoint.Connections)
            {
                if (c.Streams == 0)
                {
                    c.ClosedByPool = true;
                    (idle ??= []).Add(c);
                }
                else
                {
                    c.CloseWhenIdle = true;
                }
            }

            // Busy ones stay in the list (the last Return closes them); WatchAsync drops every one when it ends.
            endpoint.Connections.RemoveAll(static c => c.ClosedByPool);
            while (endpoint.Waiters.TryDequeue(out var w))
            {
                (wake ??= []).Add(w);
            }
        }

        if (idle is not null)
        {
            foreach (var c in idle)
            {
                _ = CloseAsync(c, CauseRetired);
            }
        }

        if (wake is not null)
        {
            foreach (var w in wake)
            {
                w.TrySetResult();
            }
        }
    }

    /// <summary>A stream slot came free: the oldest rent still waiting looks again.</summary>
    private static void WakeOne(EndpointState endpoint)
    {
        TaskCompletionSource? waiter = null;
        using (endpoint.Lock.EnterScope())
        {
            while (endpoint.Waiters.TryDequeue(out var next))
            {
                if (!next.Task.IsCompleted)
                {
                    waiter = next;
                    break;
                }
            }
        }

        waiter?.TrySetResult();
    }

    /// <summary>Closes every connection (GOAWAY NO_ERROR; streams still open end ConnectionLost) and stops the sweep.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _sweepTimer.Dispose();
        List<Http2PooledConnection> all = [];
        foreach (var endpoint in _endpoints.Values)
        {
            using (endpoint.Lock.EnterScope())
            {
                all.AddRange(endpoint.Connections);
                all.AddRange(endpoint.Draining);
                endpoint.Connections.Clear();
                endpoint.Draining.Clear();
                while (endpoint.Waiters.TryDequeue(out var w))
                {
                    w.TrySetResult();
                }
            }
        }

        foreach (var c in all)
        {
            await CloseAsync(c, CauseClosed).ConfigureAwait(false);
        }

        while (_freeExchanges.TryDequeue(out var exchange))
        {
            exchange.DisposeBuffers();
        }
    }

    // ---- renting ---------------------------------------------------------------------------------

    private bool TryOpenUnsynchronized(EndpointState endpoint, out PoolRentResult result)
    {
        var connections = endpoint.Connections;
        for (var i = 0; i < connections.Count; i++)
        {
            var c = connections[i];
            if (c.Client.TryOpenStream(out var stream))
            {
                c.Streams++;
                var reused = c.Carried++ > 0;
                if (reused)
                {
                    _metrics?.PoolConnectionsReused.Add(1);
                }

                var exchange = TakeExchange();
                result = PoolRentResult.Success(exchange.Start(this, endpoint, c, stream, reused));
                return true;
            }
        }

        result = default;
        return false;
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PoolRentResult> RentSlowAsync(EndpointState endpoint, CancellationToken cancellationToken)
    {
        try
        {
            return await RentSlowCoreAsync(endpoint, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            using (endpoint.Lock.EnterScope())
            {
                endpoint.PendingRents--;
            }
        }
    }

    private async ValueTask<PoolRentResult> RentSlowCoreAsync(EndpointState endpoint, CancellationToken cancellationToken)
    {
        var deadline = _options.WaitTimeout == Timeout.InfiniteTimeSpan ? long.MaxValue : _time.GetTimestamp() + (long)(_options.WaitTimeout.TotalSeconds * _time.TimestampFrequency);
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            Task<ConnectFailure?>? connecting = null;
            TaskCompletionSource? waiter = null;
            var retired = false;
            using (endpoint.Lock.EnterScope())
            {
                if (endpoint.Retired)
                {
                    retired = true;
                }
                else if (TryOpenUnsynchronized(endpoint, out var result))
                {
                    return result;
                }
                else if (endpoint.Connecting is { } pending)
                {
                    connecting = pending;
                }
                else if (_options.MaxConnectionsPerEndpoint == 0 || endpoint.Connections.Count < _options.MaxConnectionsPerEndpoint)
                {
                    var tcs = new TaskCompletionSource<ConnectFailure?>(TaskCreationOptions.RunContinuationsAsynchronously);
                    endpoint.Connecting = tcs.Task;
                    connecting = tcs.Task;
                    _ = ConnectAsync(endpoint, tcs);
                }
                else
                {
                    waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    endpoint.Waiters.Enqueue(waiter);
                }
            }

            if (retired)
            {
                // Retired while this rent waited (the address left discovery, maybe to come back): a new entry.
                return await RentAsync(endpoint.Address, cancellationToken).ConfigureAwait(false);
            }

            if (connecting is not null)
            {
                var failure = await connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
                if (failure is { } f)
                {
                    return PoolRentResult.Failed(f);
                }

                continue;
            }

            var left = deadline == long.MaxValue ? Timeout.InfiniteTimeSpan : _time.GetElapsedTime(_time.GetTimestamp(), deadline);
            if (deadline != long.MaxValue && left <= TimeSpan.Zero)
            {
                waiter!.TrySetResult();
                return PoolRentResult.Failed(new ConnectFailure(endpoint.Address, ConnectFailureCause.PoolExhausted,
                    $"every HTTP/2 connection is at its concurrent-stream limit and the endpoint has {_options.MaxConnectionsPerEndpoint} connections"));
            }

            try
            {
                await waiter!.Task.WaitAsync(left, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
                if (!waiter!.TrySetResult())
                {
                    // A Return picked this waiter just as it gave up: hand the free slot on to the next one.
                    WakeOne(endpoint);
                }

                if (e is OperationCanceledException)
                {
                    throw;
                }

                // Timed out: one more look, a slot may have come free just now.
            }
        }
    }

    private async Task ConnectAsync(EndpointState endpoint, TaskCompletionSource<ConnectFailure?> done)
    {
        // Off the caller's lock.
        await Task.Yield();
        ConnectFailure? failure = null;
        Http2PooledConnection? pooled = null;
        try
        {
            var connected = await _connector.TryConnectAsync(endpoint.Address, CancellationToken.None).ConfigureAwait(false);
            if (!connected.IsSuccess)
            {
                failure = connected.Failure;
            }
            else
            {
                var transport = connected.Connection!;
                var (clientOptions, service) = ClientOptionsFor(endpoint.Address);
                var client = new Http2ClientConnection(transport, clientOptions);
                string? problem = null;
                try
                {
                    await client.StartAsync().ConfigureAwait(false);
                    var settings = client.PeerSettingsReceived;
                    var handshake = _options.HandshakeTimeout;
                    var ok = handshake == Timeout.InfiniteTimeSpan
                        ? await settings.ConfigureAwait(false)
                        : await settings.WaitAsync(handshake, _time).ConfigureAwait(false);
                    if (!ok)
                    {
                        problem = client.CloseReason ?? "the connection closed before the server's SETTINGS";
                    }
                }
                catch (TimeoutException)
                {
                    problem = $"no SETTINGS frame from the server within {_options.HandshakeTimeout.TotalMilliseconds:0} ms";
                }
                catch (Exception e) when (e is IOException or ConnectionAbortedException or InvalidOperationException or ObjectDisposedException)
                {
                    problem = e.Message;
                }

                if (problem is not null)
                {
                    failure = new ConnectFailure(endpoint.Address, ConnectFailureCause.ProtocolError, problem);
                    await client.DisposeAsync().ConfigureAwait(false);
                    transport.Abort();
                    await transport.DisposeAsync().ConfigureAwait(false);
                }
                else
                {
                    pooled = new Http2PooledConnection(client, transport) { IdleSince = _time.GetTimestamp(), Service = service };
                    Interlocked.Increment(ref _connectionsOpened);
                    _metrics?.PoolConnectionsCreated.Add(1);
                }
            }
        }
        catch (Exception e) when (e is IOException or ConnectionAbortedException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            failure = new ConnectFailure(endpoint.Address, ConnectFailureCause.Error, e.Message);
        }

        if (failure is { } f)
        {
            Log.ConnectFailed(_logger, endpoint.Address, f.CauseTag, f.Detail);
        }

        List<TaskCompletionSource>? wake = null;
        var disposed = false;
        using (endpoint.Lock.EnterScope())
        {
            endpoint.Connecting = null;
            if (pooled is not null)
            {
                // Retired by discovery meanwhile (the sweep never retires an endpoint with a connect in flight): not kept,
                // nothing would take streams from it or sweep it.
                disposed = Volatile.Read(ref _disposed) != 0 || endpoint.Retired;
                if (!disposed)
                {
                    endpoint.Connections.Add(pooled);
                }
            }

            // Waiters for a stream slot may use the new connection (or, after a failure, try their own connect).
            while (endpoint.Waiters.TryDequeue(out var w))
            {
                (wake ??= []).Add(w);
            }
        }

        if (pooled is not null)
        {
            if (disposed)
            {
                await CloseAsync(pooled, CauseClosed).ConfigureAwait(false);
            }
            else
            {
                _ = WatchAsync(endpoint, pooled);
            }
        }

        done.TrySetResult(failure);
        if (wake is not null)
        {
            foreach (var w in wake)
            {
                w.TrySetResult();
            }
        }
    }

    /// <summary>GOAWAY (or any end): the connection takes no new streams; once closed, its transport is disposed.</summary>
    private async Task WatchAsync(EndpointState endpoint, Http2PooledConnection pooled)
    {
        await pooled.Client.GoingAway.ConfigureAwait(false);
        var keepaliveTimedOut = pooled.Client.KeepaliveTimedOut;
        if (keepaliveTimedOut)
        {
            OnKeepaliveTimeout(endpoint, pooled);
        }

        var removed = false;
        List<TaskCompletionSource>? wake = null;
        using (endpoint.Lock.EnterScope())
        {
            if (endpoint.Connections.Remove(pooled))
            {
                removed = true;
                endpoint.Draining.Add(pooled);
                while (endpoint.Waiters.TryDequeue(out var w))
                {
                    (wake ??= []).Add(w);
                }
            }
        }

        if (wake is not null)
        {
            foreach (var w in wake)
            {
                w.TrySetResult();
            }
        }

        await pooled.Client.Closed.ConfigureAwait(false);
        using (endpoint.Lock.EnterScope())
        {
            endpoint.Draining.Remove(pooled);
        }

        if (removed && !pooled.ClosedByPool)
        {
            Log.ConnectionEnded(_logger, endpoint.Address, pooled.Client.CloseReason ?? "GOAWAY");
            _metrics?.PoolConnectionsDiscarded.Add(1, new KeyValuePair<string, object?>("cause", keepaliveTimedOut ? CauseKeepaliveTimeout : CauseGoAway));
        }

        await DisposeTransportAsync(pooled).ConfigureAwait(false);
    }

    private async Task CloseAsync(Http2PooledConnection pooled, string cause)
    {
        pooled.ClosedByPool = true;
        _metrics?.PoolConnectionsDiscarded.Add(1, new KeyValuePair<string, object?>("cause", cause));
        try
        {
            await pooled.Client.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ConnectionAbortedException or InvalidOperationException or ObjectDisposedException)
        {
            Log.CloseFailed(_logger, e.Message);
        }

        await DisposeTransportAsync(pooled).ConfigureAwait(false);
    }

    private static async Task DisposeTransportAsync(Http2PooledConnection pooled)
    {
        if (Interlocked.Exchange(ref pooled.TransportDisposed, 1) != 0)
        {
            return;
        }

        try
        {
            await pooled.Transport.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ConnectionAbortedException or InvalidOperationException or ObjectDisposedException)
        {
        }
    }

    private void Sweep()
    {
        if (Volatile.Read(ref _disposed) != 0 || _idleTimeoutStamps == long.MaxValue)
        {
            return;
        }

        var now = _time.GetTimestamp();
        List<Http2PooledConnection>? expired = null;
        foreach (var endpoint in _endpoints.Values)
        {
            var retire = false;
            using (endpoint.Lock.EnterScope())
            {
                var connections = endpoint.Connections;
                for (var i = connections.Count - 1; i >= 0; i--)
                {
                    var c = connections[i];
                    if (c.Streams == 0 && now - c.IdleSince >= _idleTimeoutStamps)
                    {
                        connections.RemoveAt(i);
                        (expired ??= []).Add(c);
                    }
                }

                // Nothing open, draining, connecting or waiting: forget the endpoint (a later rent makes a new one).
                if (connections.Count == 0 && endpoint.Draining.Count == 0 && endpoint.Connecting is null && endpoint.PendingRents == 0)
                {
                    endpoint.Retired = true;
                    retire = true;
                }
            }

            if (retire)
            {
                _endpoints.TryRemove(new KeyValuePair<UpstreamAddress, EndpointState>(endpoint.Address, endpoint));
            }
        }

        if (expired is null)
        {
            return;
        }

        foreach (var c in expired)
        {
            _ = CloseAsync(c, CauseIdleTimeout);
        }
    }

    // ---- exchange objects ------------------------------------------------------------------------

    private Http2UpstreamExchange TakeExchange()
    {
        if (_freeExchanges.TryDequeue(out var exchange))
        {
            Interlocked.Decrement(ref _freeCount);
            return exchange;
        }

        return new Http2UpstreamExchange(_options.RequestParser);
    }

    /// <summary>An exchange whose pumps ended and that was returned: kept for the next rent, or its buffers freed.</summary>
    internal void Recycle(Http2UpstreamExchange exchange)
    {
        if (Volatile.Read(ref _disposed) == 0 && Interlocked.Increment(ref _freeCount) <= _options.MaxPooledExchanges)
        {
            _freeExchanges.Enqueue(exchange);
            return;
        }

        Interlocked.Decrement(ref _freeCount);
        exchange.DisposeBuffers();
    }

    internal sealed class EndpointState(UpstreamAddress address)
    {
        public readonly SpinLatch Lock = new();
        public readonly UpstreamAddress Address = address;
        public readonly List<Http2PooledConnection> Connections = [];
        public readonly List<Http2PooledConnection> Draining = [];
        public readonly Queue<TaskCompletionSource> Waiters = new();
        public Task<ConnectFailure?>? Connecting;

        // Rents in the slow path (connecting or waiting) and whether the sweep removed the endpoint.
        public int PendingRents;
        public bool Retired;
    }

    internal sealed class Http2PooledConnection(Http2ClientConnection client, ConnectionContext transport)
    {
        public readonly Http2ClientConnection Client = client;
        public readonly ConnectionContext Transport = transport;

        /// <summary>The connection is TLS (origination): requests carry <c>:scheme https</c> (servers check it matches).</summary>
        public readonly bool Secure = transport.Features.Get<Microsoft.AspNetCore.Http.Features.ITlsConnectionFeature>() is not null;

        // Guarded by the endpoint's lock.
        public int Streams;
        public int Carried;
        public long IdleSince;
        public bool ClosedByPool;
        public bool CloseWhenIdle;
        public int TransportDisposed;

        /// <summary>The endpoint's service when the connection was opened (keepalive log and metric label).</summary>
        public string Service = "";
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3301, Level = LogLevel.Debug, Message = "HTTP/2 connect to {Endpoint} failed ({Cause}): {Detail}")]
        public static partial void ConnectFailed(ILogger logger, UpstreamAddress endpoint, string cause, string detail);

        [LoggerMessage(EventId = 3302, Level = LogLevel.Debug, Message = "HTTP/2 connection to {Endpoint} ended: {Reason}")]
        public static partial void ConnectionEnded(ILogger logger, UpstreamAddress endpoint, string reason);

        [LoggerMessage(EventId = 3303, Level = LogLevel.Debug, Message = "Closing an HTTP/2 upstream connection failed: {Reason}")]
        public static partial void CloseFailed(ILogger logger, string reason);
    }
}

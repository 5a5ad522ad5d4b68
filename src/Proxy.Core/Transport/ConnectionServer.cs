using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Proxy.Core.Transport;

/// <summary>
/// Runs connection middleware (a <see cref="ConnectionDelegate"/> per endpoint) over an
/// <see cref="IConnectionListenerFactory"/>: what <c>KestrelServer</c> does for <c>ListenOptions.Use</c>, without its
/// thread hop per connection.
/// </summary>
/// <remarks>
/// <para>
/// Kestrel's dispatcher queues every accepted connection to the thread pool before the middleware sees it. On a busy
/// sidecar taking a new connection per request that costs a worker's wake-up and sleep (futex, two context switches)
/// and, because the worker then registers the socket with the event loop, a cross-thread wake-up of the loop. With
/// <c>inline</c> the middleware starts on the thread that accepted the connection (with our transport, the event loop
/// that saw it arrive), up to its first asynchronous wait, and the next connection is accepted after that. So the
/// middleware's synchronous start must not block: the same rule as for everything the loop resumes.
/// </para>
/// <para>
/// Stopping follows Kestrel's order: stop accepting (unbind), wait for the open connections until the token fires,
/// abort the rest (<see cref="ConnectionContext.Abort(ConnectionAbortedException)"/>) and give them a second to end.
/// A connection's middleware that throws is logged; the connection is disposed when its middleware ends, either way.
/// </para>
/// </remarks>
public sealed partial class ConnectionServer : IAsyncDisposable
{
    private static readonly TimeSpan AbortGrace = TimeSpan.FromSeconds(1);

    private readonly IConnectionListenerFactory _transport;
    private readonly ILogger _logger;
    private readonly bool _inline;
    private readonly List<Binding> _bindings = [];
    private readonly Lock _lock = new();
    private readonly HashSet<Running> _open = [];
    private readonly List<Task> _acceptLoops = [];
    private TaskCompletionSource? _allClosed;
    private bool _started;

    /// <param name="transport">Binds the endpoints.</param>
    /// <param name="logger">For middleware that throws, and accept loops that fail.</param>
    /// <param name="inline">Start each connection's middleware on the accepting thread; false queues it to the thread pool as Kestrel does.</param>
    public ConnectionServer(IConnectionListenerFactory transport, ILogger logger, bool inline = true)
    {
        _transport = transport;
        _logger = logger;
        _inline = inline;
    }

    /// <summary>Connections accepted and not yet ended.</summary>
    public int OpenConnections
    {
        get
        {
            lock (_lock)
            {
                return _open.Count;
            }
        }
    }

    /// <summary>Adds an endpoint to bind at <see cref="StartAsync"/>, served by <paramref name="application"/>.</summary>
    public void Add(string name, EndPoint endPoint, ConnectionDelegate application)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        ArgumentNullException.ThrowIfNull(application);
        if (_started)
        {
            throw new InvalidOperationException("Endpoints are added before the server starts.");
        }

        _bindings.Add(new Binding(name, endPoint, application));
    }

    /// <summary>The names and endpoints added; after <see cref="StartAsync"/>, the bound ones (a port 0 resolved).</summary>
    public IReadOnlyList<(string Name, EndPoint EndPoint)> EndPoints
        => _bindings.Select(static b => (b.Name, b.Current)).ToArray();

    /// <summary>The bound endpoint named <paramref name="name"/>, or null.</summary>
    public EndPoint? EndPointOf(string name)
        => _bindings.FirstOrDefault(b => b.Name == name)?.Current;

    /// <summary>
    /// Binds every endpoint, then starts accepting on each. When one fails to bind, the ones already bound are unbound
    /// and the failure propagates; an address in use becomes an <see cref="IOException"/> naming the listener and the
    /// address (as Kestrel reports it), with the <see cref="AddressInUseException"/> inside.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_started)
        {
            throw new InvalidOperationException("The server was started already.");
        }

        _started = true;
        try
        {
            foreach (var binding in _bindings)
            {
                try
                {
                    binding.Listener = await _transport.BindAsync(binding.EndPoint, cancellationToken);
                }
                catch (AddressInUseException ex)
                {
                    throw new IOException($"Failed to bind listener {binding.Name} to address {binding.EndPoint}: address already in use.", ex);
                }
            }
        }
        catch
        {
            foreach (var binding in _bindings)
            {
                if (binding.Listener is { } listener)
                {
                    await listener.DisposeAsync();
                    binding.Listener = null;
                }
            }

            throw;
        }

        // The accept loops start without the caller's execution context: a connection's middleware, which starts on
        // the accept loop's thread, sees none of the starter's async-locals (as under Kestrel's thread-pool dispatch).
        // They also capture none themselves (flow stays suppressed while they start on the pool thread): resumed on an
        // event loop, whose thread suppresses flow too, they and what they start run without one.
        using (ExecutionContext.SuppressFlow())
        {
            foreach (var binding in _bindings)
            {
                _acceptLoops.Add(Task.Run(() => StartWithoutContext(binding), CancellationToken.None));
            }
        }
    }

    private Task StartWithoutContext(Binding binding)
    {
        // A pool thread runs this with its own (default) context: suppress it so the loop's first await captures none.
        using (SuppressedFlow.Begin())
        {
            return AcceptLoopAsync(binding);
        }
    }

    /// <summary>
    /// Stops accepting, waits for the open connections to end until <paramref name="cancellationToken"/> fires, then
    /// aborts those still open and waits a moment for them to end.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var binding in _bindings)
        {
            if (binding.Listener is { } listener)
            {
                await listener.UnbindAsync(CancellationToken.None);
            }
        }

        await Task.WhenAll(_acceptLoops);
        foreach (var binding in _bindings)
        {
            if (binding.Listener is { } listener)
            {
                await listener.DisposeAsync();
            }
        }

        var allClosed = AllClosed();
        if (allClosed.IsCompleted)
        {
            return;
        }

        try
        {
            await allClosed.WaitAsync(cancellationToken);
            return;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        Running[] open;
        lock (_lock)
        {
            open = [.. _open];
        }

        foreach (var running in open)
        {
            running.Connection.Abort(new ConnectionAbortedException("The connection was aborted because the server is shutting down."));
        }

        try
        {
            await allClosed.WaitAsync(AbortGrace, CancellationToken.None);
        }
        catch (TimeoutException)
        {
            Log.NotAllEnded(_logger, OpenConnections);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_started)
        {
            return;
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await StopAsync(cts.Token);
    }

    private Task AllClosed()
    {
        lock (_lock)
        {
            if (_open.Count == 0)
            {
                return Task.CompletedTask;
            }

            _allClosed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _allClosed.Task;
        }
    }

    private async Task AcceptLoopAsync(Binding binding)
    {
        var listener = binding.Listener!;
        while (true)
        {
            ConnectionContext? connection;
            try
            {
                connection = await listener.AcceptAsync();
            }
            catch (Exception ex)
            {
                // The listener handles what a client or the kernel can cause (resets, descriptor exhaustion) and
                // returns null once unbound: anything else ends this endpoint, loudly.
                Log.AcceptLoopFailed(_logger, binding.Name, binding.EndPoint, ex);
                return;
            }

            if (connection is null)
            {
                return;
            }

            var running = new Running(this, connection, binding.Application);
            lock (_lock)
            {
                _open.Add(running);
            }

            if (_inline)
            {
                running.Start();
            }
            else
            {
                ThreadPool.UnsafeQueueUserWorkItem(running, preferLocal: false);
            }
        }
    }

    private void Ended(Running running)
    {
        TaskCompletionSource? allClosed = null;
        lock (_lock)
        {
            _open.Remove(running);
            if (_open.Count == 0 && _allClosed is not null)
            {
                allClosed = _allClosed;
                _allClosed = null;
            }
        }

        allClosed?.TrySetResult();
    }

    private sealed class Binding(string name, EndPoint endPoint, ConnectionDelegate application)
    {
        public string Name { get; } = name;

        public EndPoint EndPoint { get; } = endPoint;

        public ConnectionDelegate Application { get; } = application;

        public IConnectionListener? Listener { get; set; }

        /// <summary>The bound endpoint while bound (a port 0 resolved), else the configured one.</summary>
        public EndPoint Current => Listener?.EndPoint ?? EndPoint;
    }

    /// <summary>One accepted connection: runs its middleware, then disposes it.</summary>
    private sealed class Running(ConnectionServer server, ConnectionContext connection, ConnectionDelegate application) : IThreadPoolWorkItem
    {
        public ConnectionContext Connection { get; } = connection;

        public void Execute() => Start();

        public void Start()
        {
            // The middleware captures no execution context, also when it starts on a pool thread (not inline).
            using (SuppressedFlow.Begin())
            {
                _ = RunAsync();
            }
        }

        private async Task RunAsync()
        {
            try
            {
                await application(Connection);
            }
            catch (Exception ex)
            {
                Log.MiddlewareFailed(server._logger, Connection.ConnectionId, ex);
            }
            finally
            {
                try
                {
                    await Connection.DisposeAsync();
                }
                catch (Exception ex)
                {
                    Log.DisposeFailed(server._logger, Connection.ConnectionId, ex);
                }

                server.Ended(this);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1030, Level = LogLevel.Error, Message = "Connection {ConnectionId}: the connection middleware failed")]
        public static partial void MiddlewareFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 1031, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: disposing the connection failed")]
        public static partial void DisposeFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 1032, Level = LogLevel.Critical, Message = "Listener {Name} on {EndPoint} stopped accepting connections")]
        public static partial void AcceptLoopFailed(ILogger logger, string name, EndPoint endPoint, Exception exception);

        [LoggerMessage(EventId = 1033, Level = LogLevel.Warning, Message = "{Count} connection(s) had not ended a second after being aborted at shutdown")]
        public static partial void NotAllEnded(ILogger logger, int count);
    }
}

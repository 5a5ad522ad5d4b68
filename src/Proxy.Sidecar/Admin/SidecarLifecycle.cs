using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.Admin;

/// <summary>What /ready answers: 503 while the listeners bind, 200 once they are bound, 503 again from the moment a drain is asked for.</summary>
internal sealed class Readiness
{
    private const int Starting = 0;
    private const int Ready = 1;
    private const int Draining = 2;

    private int _state;

    public bool IsReady => Volatile.Read(ref _state) == Ready;

    public bool IsDraining => Volatile.Read(ref _state) == Draining;

    public void MarkReady() => Interlocked.CompareExchange(ref _state, Ready, Starting);

    public void MarkDraining() => Volatile.Write(ref _state, Draining);
}

/// <summary>Why the sidecar is stopping.</summary>
internal enum StopReason
{
    /// <summary>SIGTERM or SIGINT (or the run command's cancellation): a graceful drain, up to the drain timeout.</summary>
    Signal,

    /// <summary>Admin <c>POST /drain</c>: the same graceful drain.</summary>
    Drain,

    /// <summary>Admin <c>POST /quitquitquit</c> (jobs): the same drain, bounded by <see cref="SidecarLifecycle.QuitTimeout"/>.</summary>
    Quit,
}

/// <summary>How a drain went: how long it took, how many client connections were open when it began and how many were cut at its timeout.</summary>
internal sealed record DrainResult(StopReason Reason, TimeSpan Elapsed, int OpenAtStart, int Cut);

/// <summary>
/// The sidecar's lifecycle: ready, then (on a signal, POST /drain or POST /quitquitquit) a graceful drain, then stopped.
/// <code>
///   RequestStop ─► /ready 503 at once
///   DrainAsync  ─► drain token fires: HTTP/1.1 connections get Connection: close / idle ones close, HTTP/2 ones GOAWAY
///               ─► listeners stop accepting (Kestrel StopAsync); open connections are waited for ...
///               ─► ... until all are done, or the timeout passes: the rest (opaque TCP, slow requests) are closed and counted
/// </code>
/// It counts the open client connections itself (<see cref="Track"/>), so a drain can say how many it had to cut.
/// </summary>
internal sealed partial class SidecarLifecycle : IDisposable
{
    /// <summary>
    /// Upper bound of a /quitquitquit drain: prompt, as Envoy's /quitquitquit is for jobs, yet HTTP requests in flight
    /// (GOAWAY'd, Connection: close) still get to finish. 5 s, Istio's default terminationDrainDuration.
    /// </summary>
    public static readonly TimeSpan QuitTimeout = TimeSpan.FromSeconds(5);

    private readonly CancellationTokenSource _drain = new();
    private readonly CancellationTokenSource _cut = new();
    private readonly TaskCompletionSource<StopReason> _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Counter<long> _drains;
    private readonly Counter<long> _cutConnections;
    private int _open;

    public SidecarLifecycle(Meter meter)
    {
        _drains = meter.CreateCounter<long>("proxy_drains", "{drain}", "Graceful drains begun, by reason (signal, drain, quitquitquit).");
        _cutConnections = meter.CreateCounter<long>("proxy_drain_connections_cut", "{connection}", "Client connections still open when a drain's timeout passed, closed by the proxy, by reason.");
    }

    public Readiness Readiness { get; } = new();

    /// <summary>Fires when the drain begins; the HTTP stages watch it (<c>Http1ForwarderOptions.Drain</c>).</summary>
    public CancellationToken DrainToken => _drain.Token;

    /// <summary>Fires when a drain's timeout passes (or on <see cref="CutNow"/>): what is still open is closed.</summary>
    public CancellationToken CutToken => _cut.Token;

    /// <summary>Completes with the reason of the first stop request.</summary>
    public Task<StopReason> StopRequested => _stop.Task;

    /// <summary>Client connections open now on the proxy's listeners (not the admin's).</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    /// <summary>Asks for a stop; /ready turns 503 at once. False when a stop was asked for already (the first reason wins).</summary>
    public bool RequestStop(StopReason reason)
    {
        if (!_stop.TrySetResult(reason))
        {
            return false;
        }

        Readiness.MarkDraining();
        return true;
    }

    /// <summary>Ends a drain now, as if its timeout had passed (a second SIGTERM/SIGINT).</summary>
    public void CutNow()
    {
        RequestStop(StopReason.Signal);
        try
        {
            _cut.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Wraps a listener's connection middleware so that its connections are counted while they run.</summary>
    public ConnectionDelegate Track(ConnectionDelegate inner) => async connection =>
    {
        Interlocked.Increment(ref _open);
        try
        {
            await inner(connection);
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    };

    /// <summary>How long a drain for <paramref name="reason"/> may take.</summary>
    public static TimeSpan Timeout(StopReason reason, TimeSpan drainTimeout)
        => reason == StopReason.Quit && drainTimeout > QuitTimeout ? QuitTimeout : drainTimeout;

    public static string Name(StopReason reason) => reason switch
    {
        StopReason.Drain => "drain",
        StopReason.Quit => "quitquitquit",
        _ => "signal",
    };

    /// <summary>
    /// Waits for a stop request, then drains: signals the HTTP stages, stops the listeners through
    /// <paramref name="stopListeners"/> (which stops accepting, waits for the connections until its token fires, then
    /// closes the rest) with a token that fires at the drain timeout (<see cref="QuitTimeout"/> at most for
    /// /quitquitquit) or on <see cref="CutNow"/>.
    /// </summary>
    public async Task<DrainResult> RunAsync(TimeSpan drainTimeout, Func<CancellationToken, Task> stopListeners, ILogger logger, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var reason = await StopRequested.ConfigureAwait(false);
        var timeout = Timeout(reason, drainTimeout);
        var started = time.GetTimestamp();
        var openAtStart = OpenConnections;
        var name = Name(reason);
        var tags = new KeyValuePair<string, object?>("reason", name);
        _drains.Add(1, tags);
        LogDraining(logger, name, openAtStart, timeout.TotalSeconds);
        _drain.Cancel();

        // The connections still open when the deadline passes are the ones cut.
        var box = new CutBox(this);
        using (_cut.Token.UnsafeRegister(static s => ((CutBox)s!).Capture(), box))
        {
            _cut.CancelAfter(timeout);
            await stopListeners(_cut.Token).ConfigureAwait(false);
        }

        var cut = box.Cut;
        var elapsed = time.GetElapsedTime(started);
        if (cut > 0)
        {
            _cutConnections.Add(cut, tags);
            LogCut(logger, cut, timeout.TotalSeconds);
        }

        LogDrained(logger, elapsed.TotalMilliseconds, openAtStart, cut);
        return new DrainResult(reason, elapsed, openAtStart, cut);
    }

    public void Dispose()
    {
        _stop.TrySetCanceled();
        _drain.Dispose();
        _cut.Dispose();
    }

    private sealed class CutBox(SidecarLifecycle lifecycle)
    {
        private int _cut = -1;

        public int Cut => Math.Max(0, Volatile.Read(ref _cut));

        public void Capture() => Interlocked.CompareExchange(ref _cut, lifecycle.OpenConnections, -1);
    }

    [LoggerMessage(EventId = 4601, Level = LogLevel.Information, Message = "Draining ({Reason}): /ready answers 503, listeners stop accepting, {Open} open connection(s) get up to {Timeout} s to finish")]
    private static partial void LogDraining(ILogger logger, string reason, int open, double timeout);

    [LoggerMessage(EventId = 4602, Level = LogLevel.Warning, Message = "Drain timeout ({Timeout} s) passed: closing {Cut} connection(s) still open")]
    private static partial void LogCut(ILogger logger, int cut, double timeout);

    [LoggerMessage(EventId = 4603, Level = LogLevel.Information, Message = "Drained in {Elapsed:0} ms: {Open} connection(s) were open, {Cut} cut at the timeout")]
    private static partial void LogDrained(ILogger logger, double elapsed, int open, int cut);
}

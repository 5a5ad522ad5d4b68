namespace Proxy.Http.Http2.Server;

/// <summary>
/// The connection idle timeout for HTTP/2 clients (<see cref="Forwarding.Http1ForwarderOptions.IdleTimeout"/>, the
/// sidecar's <c>--http-idle-timeout</c>, which closes an idle HTTP/1.1 keep-alive connection too): a connection with no
/// open stream for that long is closed with GOAWAY(NO_ERROR) naming the last stream it processed, as Envoy's
/// <c>idle_timeout</c> does for HTTP/2 connections. A stream the client opens at the same moment has a higher id than
/// the GOAWAY's, so the client knows it was not processed and may retry it (RFC 9113 §6.8); the close lingers like an
/// error close, so such a stream's bytes do not turn the FIN into a reset that would discard the GOAWAY.
/// </summary>
/// <remarks>
/// Nothing per stream but one increment: a timer ticks every quarter of the timeout and counts the ticks across which
/// the stream table stayed empty and no stream was opened; at four such ticks in a row the connection has been idle for
/// at least the timeout, and it closes by at most a quarter more.
/// </remarks>
internal sealed partial class Http2ServerSession
{
    private const int IdleTicksPerTimeout = 4;

    private ITimer? _idleTimer;
    private long _streamsOpened;
    private long _streamsOpenedAtTick;
    private int _idleTicks;
    private int _idleExpired;
    private bool _idleClosed;

    /// <summary>Starts the idle clock once the connection is set up (after the preface).</summary>
    private void StartIdleTimer()
    {
        var limit = _server.Forwarder.Options.IdleTimeout;
        if (limit == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        // At least a millisecond: a timer's period rounds to whole milliseconds, and 0 would make it fire only once.
        var tick = TimeSpan.FromTicks(Math.Max(limit.Ticks / IdleTicksPerTimeout, TimeSpan.TicksPerMillisecond));
        _idleTimer = _time.CreateTimer(static s => ((Http2ServerSession)s!).OnIdleTick(), this, tick, tick);
    }

    /// <summary>When the frame loop has ended: no more ticks (one would cut the closing linger's read short).</summary>
    private void StopIdleTimer() => _idleTimer?.Dispose();

    /// <summary>Under the lock, when a stream enters the table.</summary>
    private void CountOpenedStreamLocked() => _streamsOpened++;

    private void OnIdleTick()
    {
        using (_lock.EnterScope())
        {
            var idle = _streams.Count == 0 && _streamsOpened == _streamsOpenedAtTick;
            _streamsOpenedAtTick = _streamsOpened;
            _idleTicks = idle ? _idleTicks + 1 : 0;
            if (_idleTicks < IdleTicksPerTimeout)
            {
                return;
            }
        }

        if (Interlocked.Exchange(ref _idleExpired, 1) == 0)
        {
            // The frame loop checks again (a stream may have come in since) and ends the connection.
            _input.CancelPendingRead();
        }
    }

    /// <summary>The frame loop, after a cancelled read: true when the idle timeout ends the connection.</summary>
    private bool IdleTimedOut()
    {
        if (Interlocked.Exchange(ref _idleExpired, 0) == 0)
        {
            return false;
        }

        using (_lock.EnterScope())
        {
            if (_streams.Count != 0)
            {
                // A stream came in after the tick: the clock starts again when the table is empty.
                _idleTicks = 0;
                return false;
            }
        }

        return true;
    }

    /// <summary>The GOAWAY's debug text when the connection ends for its idle timeout.</summary>
    private string IdleReason()
        => $"idle timeout: no stream for {_server.Forwarder.Options.IdleTimeout.TotalMilliseconds:0} ms";
}

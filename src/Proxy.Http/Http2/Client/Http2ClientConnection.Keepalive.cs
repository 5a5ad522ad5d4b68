using Proxy.Http.Http2.Frames;

namespace Proxy.Http.Http2.Client;

/// <summary>
/// Keepalive (PING) of one client connection, on when <see cref="Http2ClientOptions.KeepaliveInterval"/> is finite:
/// <code>
/// frame loop: every read ─► _lastReceived = now (one timestamp, no lock, no timer per request)
/// one one-shot timer per connection, re-armed by its own callback:
///   no PING outstanding, nothing received for KeepaliveInterval ─► PING(counter), wait KeepaliveTimeout
///   its ACK (frame loop) ─► the timer is re-armed for one interval
///   PING outstanding, anything received since it left (its ACK or any frame) ─► alive, wait for the next interval
///   PING outstanding, nothing received for KeepaliveTimeout ─► dead: KeepaliveTimedOut, the frame loop aborts
///       (no new streams, open streams end ConnectionLost, GOAWAY best effort, output completed); one more
///       KeepaliveTimeout later a flush still blocked by the silent peer is cancelled so the close can finish
/// </code>
/// DATA flowing keeps the clock fresh, so a busy connection sends no PING; an idle pooled connection is pinged too.
/// </summary>
public sealed partial class Http2ClientConnection
{
    private static readonly TimerCallback s_keepaliveTick = static s => ((Http2ClientConnection)s!).OnKeepaliveTick();

    private ITimer? _keepaliveTimer;
    private long _lastReceived;
    private long _keepaliveIntervalStamps;
    private long _keepaliveTimeoutStamps;
    private int _keepaliveTickRunning;
    private volatile bool _keepaliveTimedOut;
    private long _keepalivePingsSent;
    private long _keepalivePingAcks;

    // Written by the timer callback only (callbacks never overlap: one-shot timer, re-armed at the end of each).
    private long _pingSentAt;
    private bool _keepaliveClosing;
    private ulong _pingCounter;

    // The opaque data of the outstanding PING, read by the frame loop when an ACK arrives.
    private ulong _pingData;

    /// <summary>True when the connection was closed because a keepalive PING got no answer (nor any frame) in time.</summary>
    public bool KeepaliveTimedOut => _keepaliveTimedOut;

    /// <summary>How long a keepalive PING may go unanswered (<see cref="Http2ClientOptions.KeepaliveTimeout"/>).</summary>
    internal TimeSpan KeepaliveTimeoutSetting => _options.KeepaliveTimeout;

    /// <summary>Keepalive PINGs sent so far (diagnostics, tests).</summary>
    public long KeepalivePingsSent => Interlocked.Read(ref _keepalivePingsSent);

    /// <summary>ACKs received for our keepalive PINGs (diagnostics, tests).</summary>
    public long KeepalivePingAcks => Interlocked.Read(ref _keepalivePingAcks);

    private void StartKeepalive()
    {
        var interval = _options.KeepaliveInterval;
        if (interval == Timeout.InfiniteTimeSpan || interval <= TimeSpan.Zero)
        {
            return;
        }

        var time = _options.TimeProvider;
        _keepaliveIntervalStamps = ToStamps(interval, time);
        _keepaliveTimeoutStamps = ToStamps(_options.KeepaliveTimeout, time);
        Volatile.Write(ref _lastReceived, time.GetTimestamp());
        _keepaliveTimer = time.CreateTimer(s_keepaliveTick, this, interval, Timeout.InfiniteTimeSpan);
    }

    private void StopKeepalive() => _keepaliveTimer?.Dispose();

    /// <summary>A PING ACK from the server (the frame loop): counted when it answers our outstanding keepalive PING.</summary>
    private void OnPingAck(ulong data)
    {
        if (_keepaliveTimer is not null && data == Volatile.Read(ref _pingData))
        {
            // The answer: the next PING is due one interval after it (not when the timeout would have run out).
            Interlocked.Increment(ref _keepalivePingAcks);
            Rearm(_keepaliveIntervalStamps, _options.TimeProvider);
        }
    }

    private void OnKeepaliveTick()
    {
        if (Interlocked.Exchange(ref _keepaliveTickRunning, 1) != 0)
        {
            return;
        }

        try
        {
            KeepaliveTick();
        }
        finally
        {
            Volatile.Write(ref _keepaliveTickRunning, 0);
        }
    }

    private void KeepaliveTick()
    {
        if (_keepaliveClosing)
        {
            // Declared dead a timeout ago and still not closed (the close marks the connection closed first, then waits
            // for the write lock): a writer is stuck in a flush the silent peer never drains. Cancelling it lets the
            // close finish.
            if (!_closed.Task.IsCompleted)
            {
                _output.CancelPendingFlush();
            }

            return;
        }

        if (Volatile.Read(ref _isClosed))
        {
            return;
        }

        var time = _options.TimeProvider;
        var now = time.GetTimestamp();
        var last = Volatile.Read(ref _lastReceived);
        long next;
        if (_pingSentAt != 0)
        {
            if (last - _pingSentAt >= 0)
            {
                // Its ACK or any other frame arrived after the PING left: alive.
                _pingSentAt = 0;
            }
            else if (now - _pingSentAt >= _keepaliveTimeoutStamps)
            {
                DeclareDead(time.GetElapsedTime(last, now));
                return;
            }
            else
            {
                Rearm(_pingSentAt + _keepaliveTimeoutStamps - now, time);
                return;
            }
        }

        var idle = now - last;
        if (idle < _keepaliveIntervalStamps)
        {
            next = _keepaliveIntervalStamps - idle;
        }
        else
        {
            _pingSentAt = now;
            var data = ++_pingCounter;
            Volatile.Write(ref _pingData, data);

            // Armed before the PING leaves, so the ACK's re-arm (OnPingAck) always comes after this one.
            Rearm(_keepaliveTimeoutStamps, time);
            _ = SendKeepalivePingAsync(data);
            return;
        }

        Rearm(next, time);
    }

    private void DeclareDead(TimeSpan silent)
    {
        var timeout = _options.KeepaliveTimeout;
        var reason = $"no answer to a keepalive PING within {timeout.TotalMilliseconds:0} ms (nothing received from the server for {silent.TotalMilliseconds:0} ms)";
        if (Interlocked.CompareExchange(ref _abortReason, reason, null) is not null)
        {
            // Already closing for another reason.
            return;
        }

        _keepaliveTimedOut = true;
        _keepaliveClosing = true;
        _abortCode = Http2ErrorCode.NoError;
        Interlocked.CompareExchange(ref _closeReason, reason, null);

        // No new streams from now on, even if the frame loop is held up (waiting for the write lock behind a stuck
        // flush) before it sees the abort; streams reserved but not yet sent end Refused (retryable). The pool hears it
        // at once (its GoingAway continuations run on the thread pool).
        using (_lock.EnterScope())
        {
            _goingAway = true;
        }

        _goingAwayTask.TrySetResult();
        Rearm(_keepaliveTimeoutStamps, _options.TimeProvider);

        // Not under any lock: the frame loop may run inline here, end the streams and close.
        _input.CancelPendingRead();
    }

    private async Task SendKeepalivePingAsync(ulong data)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!Volatile.Read(ref _isClosed) && !_outputBroken)
            {
                Http2FrameWriter.WritePing(_output, data, ack: false);
                Interlocked.Increment(ref _keepalivePingsSent);
                await FlushNowUnlockedAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void Rearm(long stamps, TimeProvider time)
    {
        var due = TimeSpan.FromSeconds((double)stamps / time.TimestampFrequency);
        if (due < TimeSpan.FromMilliseconds(1))
        {
            due = TimeSpan.FromMilliseconds(1);
        }

        try
        {
            _keepaliveTimer?.Change(due, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The connection closed meanwhile.
        }
    }

    private static long ToStamps(TimeSpan span, TimeProvider time) =>
        span == Timeout.InfiniteTimeSpan ? long.MaxValue / 2 : (long)Math.Min(span.TotalSeconds * time.TimestampFrequency, long.MaxValue / 2);
}

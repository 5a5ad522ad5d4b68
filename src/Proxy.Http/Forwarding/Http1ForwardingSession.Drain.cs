namespace Proxy.Http.Forwarding;

/// <summary>
/// Graceful drain of an HTTP/1.1 client connection (<see cref="Http1ForwarderOptions.Drain"/>). HTTP/1.1 has no way
/// to tell an idle client "no more requests here" other than closing, and a close can cross a request the client is
/// sending at that moment. So, once the drain fires:
/// <list type="number">
/// <item>every response that has not started yet goes out with <c>Connection: close</c> and the connection then ends
///       after it (a client in a request loop learns of the drain from its next response);</item>
/// <item>the idle timeout shrinks to <see cref="Http1ForwarderOptions.DrainIdleTimeout"/>: a connection idle that long
///       already is closed at once (FIN), others when they get there, by the idle timer's usual path.</item>
/// </list>
/// Lanes of HTTP/2 connections are left alone: their connection drains with GOAWAY (<c>Http2ServerSession.Drain.cs</c>).
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    private CancellationTokenRegistration _drainRegistration;

    // Set by the drain callback; read when a response head is written and when the connection goes idle.
    private volatile bool _draining;

    private bool DrainApplies => !_isHttp2Lane && _options.Drain.CanBeCanceled;

    private TimeSpan IdleLimit => TimeSpan.FromTicks(Volatile.Read(ref _idleLimitTicks));

    private void RegisterDrain()
    {
        if (DrainApplies)
        {
            // Runs at once when the drain has already begun.
            _drainRegistration = _options.Drain.UnsafeRegister(static s => ((Http1ForwardingSession)s!).OnDrain(), this);
        }
    }

    private void OnDrain()
    {
        _draining = true;
        var grace = _options.DrainIdleTimeout;
        var limit = IdleLimit;
        if (limit == Timeout.InfiniteTimeSpan || limit > grace)
        {
            Volatile.Write(ref _idleLimitTicks, grace.Ticks);
        }

        // Fire the idle timer now: when the connection waits for a request it compares its idle time with the new
        // limit (closing or rescheduling); when it is busy the callback finds it disarmed and lets the timer rest.
        Interlocked.Exchange(ref _idleScheduled, 1);
        ChangeTimer(_idleTimer!, TimeSpan.Zero);
    }
}

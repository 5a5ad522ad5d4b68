using System.IO.Pipelines;
using Proxy.Core.Addresses;
using Proxy.Core.Configuration;
using Proxy.Core.Upstream;

namespace Proxy.Http.Forwarding;

/// <summary>
/// The timeouts of one request beyond the connection's idle timeout (issue 6, part 2). Which timer watches what:
/// <code>
///  head's first byte ── head parsed ── (fault delay) ── rent ── head sent ─┬─ response head ──── response complete
///  |── header timer ──|                                                   |── response timer ──|── stream timer ──|
///                     |──────────────────────────── request timeout (absolute) ──────────────────────────────────|
/// </code>
/// <list type="bullet">
/// <item><b>header</b> (<see cref="Http1ForwarderOptions.HeaderTimeout"/>): armed only when a head does not arrive in
///       one read; 408 <c>header_timeout</c> and close.</item>
/// <item><b>request</b> (route <c>timeouts.request</c>, else the options'): folded into the gRPC deadline machinery
///       (<see cref="_deadline"/> is the earlier of the two), which already bounds the rent and the wait for the response
///       head; the fault delay waits no longer than it; after the response head the stream timer enforces it (reset).</item>
/// <item><b>per try</b> (route <c>timeouts.perTry</c>, else <see cref="Http1ForwarderOptions.ResponseTimeout"/>) and
///       <b>idle</b> before the response head (route <c>timeouts.idle</c>, else <see cref="Http1ForwarderOptions.StreamIdleTimeout"/>):
///       both count from the request head sent or the last piece of request body, so the response timer checks the
///       shorter; which one fired is kept in <see cref="_timeoutError"/>. A per-try timeout is retried like a 504.</item>
/// <item><b>idle</b> after the response head, and the request deadline: the stream timer, armed for the response body,
///       cancels the upstream read and the client flush; the client connection (or HTTP/2 stream) is then reset.</item>
/// <item><b>connect</b> (route <c>timeouts.connect</c>): bounds the rent as the deadline does, answered as a connect timeout.</item>
/// </list>
/// Requests without route timeouts take the options' values and pay nothing more than before.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    // Per request (BeginTimeouts): the limits in force for it.
    private TimeSpan _perTryTimeout;
    private bool _perTryFromRoute;
    private TimeSpan _streamIdleTimeout;
    private TimeSpan _requestTimeout;
    private long _requestDeadline;
    private bool _deadlineIsRequest;
    private TimeSpan _connectTimeout = Timeout.InfiniteTimeSpan;

    // Which relative timeout the response timer fired for (per_try_timeout / response_timeout / idle_timeout), or null.
    private volatile string? _timeoutError;

    // The stream timer (response body phase): armed state, the last byte moved either way, what fired.
    private ITimer? _streamTimer;
    private volatile bool _streamArmed;
    private int _streamScheduled;
    private long _lastResponseProgress;
    private volatile PipeReader? _streamInput;
    private volatile string? _streamTimeoutError;

    // The header timer (slowloris): armed while a split request head is being read.
    private ITimer? _headerTimer;
    private volatile bool _headerArmed;
    private volatile bool _headerTimedOut;
    private long _headerStart;

    /// <summary>Called by BeginRequest: the options' limits, until the route says otherwise.</summary>
    private void BeginTimeouts()
    {
        _perTryTimeout = _options.ResponseTimeout;
        _perTryFromRoute = false;
        _streamIdleTimeout = _options.StreamIdleTimeout;
        _requestTimeout = _options.RequestTimeout;
        _requestDeadline = 0;
        _deadlineIsRequest = false;
        _connectTimeout = Timeout.InfiniteTimeSpan;
        _timeoutError = null;
        _streamTimeoutError = null;
    }

    /// <summary>
    /// Applies the matched route's timeouts (null: none) and starts the request timeout: its deadline joins the gRPC
    /// deadline (the earlier wins) so the rent and the response wait are bounded by it.
    /// </summary>
    private void StartTimeouts(RouteTimeoutsConfig? route)
    {
        if (route is not null)
        {
            if (route.PerTry is { } perTry)
            {
                _perTryTimeout = perTry;
                _perTryFromRoute = true;
            }

            _streamIdleTimeout = route.Idle ?? _streamIdleTimeout;
            _requestTimeout = route.Request ?? _requestTimeout;
            _connectTimeout = route.Connect ?? Timeout.InfiniteTimeSpan;
        }

        if (_requestTimeout != Timeout.InfiniteTimeSpan)
        {
            var stamps = _requestTimeout.TotalSeconds * _time.TimestampFrequency;
            _requestDeadline = _requestStart + Math.Max(1, (long)stamps);
            if (_deadline == 0 || _requestDeadline < _deadline)
            {
                _deadline = _requestDeadline;
                _deadlineIsRequest = true;
            }
        }

        if (_responseTimer is null && (_deadline != 0 || _perTryTimeout != Timeout.InfiniteTimeSpan || _streamIdleTimeout != Timeout.InfiniteTimeSpan))
        {
            _responseTimer = _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnResponseTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>True when the rent must go through <see cref="RentBeforeDeadlineAsync"/>: a deadline or a route connect timeout bounds it.</summary>
    private bool RentIsBounded => _deadline != 0 || _connectTimeout != Timeout.InfiniteTimeSpan;

    /// <summary>The shorter of the per-try and idle timeouts (both count from the last request-side progress), and which it is.</summary>
    private TimeSpan RelativeResponseLimit(out string error)
    {
        var perTry = _perTryTimeout;
        var idle = _streamIdleTimeout;
        if (perTry != Timeout.InfiniteTimeSpan && (idle == Timeout.InfiniteTimeSpan || perTry <= idle))
        {
            error = _perTryFromRoute ? ProxyErrors.PerTryTimeout : ProxyErrors.ResponseTimeout;
            return perTry;
        }

        error = ProxyErrors.IdleTimeout;
        return idle;
    }

    /// <summary>What <see cref="RelativeResponseLimit"/> is for a request without route timeouts.</summary>
    private TimeSpan DefaultResponseLimit
    {
        get
        {
            var perTry = _options.ResponseTimeout;
            var idle = _options.StreamIdleTimeout;
            return perTry != Timeout.InfiniteTimeSpan && (idle == Timeout.InfiniteTimeSpan || perTry <= idle) ? perTry : idle;
        }
    }

    /// <summary>A timeout that fired before the response head: which one, in the 504 (or DEADLINE_EXCEEDED) it answers.</summary>
    private bool TimeoutNamed => _timeoutError is not null || (_deadlineExpired && _deadlineIsRequest);

    /// <summary>The per-try (or response) timeout fired: the try may be retried like a 504.</summary>
    private bool PerTryTimedOut => _timeoutError is ProxyErrors.PerTryTimeout or ProxyErrors.ResponseTimeout && !_deadlineExpired;

    private ValueTask<bool> RespondTimeoutAsync(bool hasBody)
    {
        var upstream = $"upstream {_endpoint} of service {_service}";
        var route = _route.Length == 0 ? "" : $" (route {_route})";
        if (_deadlineExpired && _deadlineIsRequest)
        {
            var stage = _rentExpired ? "while getting a connection to" : "waiting for a response head from";
            return RespondAsync(504, ProxyErrors.RequestTimeout,
                $"the request timeout of {Ms(_requestTimeout)} ms{route} expired {stage} {upstream}" + Tries(), hasBody);
        }

        return _timeoutError switch
        {
            ProxyErrors.PerTryTimeout => RespondAsync(504, ProxyErrors.PerTryTimeout,
                $"{upstream} sent no response head within the per-try timeout of {Ms(_perTryTimeout)} ms{route}" + Tries(), hasBody),
            ProxyErrors.IdleTimeout => RespondAsync(504, ProxyErrors.IdleTimeout,
                $"{upstream} sent no response head and no byte moved either way for the stream idle timeout of {Ms(_streamIdleTimeout)} ms{route}", hasBody),
            _ => RespondAsync(504, ProxyErrors.ResponseTimeout,
                $"{upstream} sent no response head within the response timeout of {Ms(_perTryTimeout)} ms" + Tries(), hasBody),
        };
    }

    private string Tries() => _attempts > 1 ? $" (try {_attempts}, after {_retries} retries)" : "";

    private static string Ms(TimeSpan value) => value.TotalMilliseconds.ToString("0", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// A bounded rent's cancellation: the route's connect timeout when it was the nearer bound (a connect timeout:
    /// retried as a connect failure), else the deadline.
    /// </summary>
    private PoolRentResult ConnectTimedOut(UpstreamAddress address)
        => PoolRentResult.Failed(new ConnectFailure(address, ConnectFailureCause.Timeout, $"no connection within the route's connect timeout of {Ms(_connectTimeout)} ms"));

    // ---- response body: the stream timer (idle either way, and the request deadline) ----------------

    /// <summary>Arms the stream timer for the response body of <paramref name="input"/>, when an idle timeout or request deadline applies.</summary>
    private void ArmStreamTimer(PipeReader input)
    {
        if ((_streamIdleTimeout == Timeout.InfiniteTimeSpan && _requestDeadline == 0) || _response.BodyKind == Http1.Http1BodyKind.None
            || (_response.BodyKind == Http1.Http1BodyKind.ContentLength && _response.ContentLength == 0))
        {
            // Nothing to time: no timeout applies, or there is no body to wait for.
            return;
        }

        _streamTimeoutError = null;
        Volatile.Write(ref _lastResponseProgress, _time.GetTimestamp());
        _streamInput = input;
        _streamArmed = true;
        _streamTimer ??= _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnStreamTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        // Lazy as the other timers: a scheduled timer keeps its due time and re-checks when it fires, unless this
        // request's deadline may come first.
        if (Interlocked.Exchange(ref _streamScheduled, 1) == 0 || _requestDeadline != 0)
        {
            ChangeTimer(_streamTimer, StreamDue());
        }
    }

    /// <summary>After the response body: disarms the timer and says whether it ended the body (then its reason is the error).</summary>
    private bool EndStreamTimer()
    {
        _streamArmed = false;
        _streamInput = null;
        return _streamTimeoutError is not null;
    }

    /// <summary>A piece of response body went out (the request body pump notes its own progress).</summary>
    private void NoteResponseProgress()
    {
        if (_streamArmed)
        {
            Volatile.Write(ref _lastResponseProgress, _time.GetTimestamp());
        }
    }

    private TimeSpan StreamDue()
    {
        var due = Timeout.InfiniteTimeSpan;
        if (_streamIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            var since = Math.Max(Volatile.Read(ref _lastResponseProgress), _pumpStarted ? Volatile.Read(ref _lastRequestProgress) : 0);
            var left = _streamIdleTimeout - _time.GetElapsedTime(since);
            due = left < TimeSpan.Zero ? TimeSpan.Zero : left;
        }

        if (_requestDeadline != 0)
        {
            var left = TimeSpan.FromSeconds((double)(_requestDeadline - _time.GetTimestamp()) / _time.TimestampFrequency);
            left = left < TimeSpan.Zero ? TimeSpan.Zero : left;
            due = due == Timeout.InfiniteTimeSpan || left < due ? left : due;
        }

        return due;
    }

    private void OnStreamTimer()
    {
        while (true)
        {
            if (!_streamArmed)
            {
                Volatile.Write(ref _streamScheduled, 0);
                if (!_streamArmed || Interlocked.Exchange(ref _streamScheduled, 1) != 0)
                {
                    return;
                }

                continue;
            }

            string? fired = null;
            if (_requestDeadline != 0 && _time.GetTimestamp() >= _requestDeadline)
            {
                fired = ProxyErrors.RequestTimeout;
            }
            else if (_streamIdleTimeout != Timeout.InfiniteTimeSpan)
            {
                var since = Math.Max(Volatile.Read(ref _lastResponseProgress), _pumpStarted ? Volatile.Read(ref _lastRequestProgress) : 0);
                if (_time.GetElapsedTime(since) >= _streamIdleTimeout)
                {
                    fired = ProxyErrors.IdleTimeout;
                }
            }

            if (fired is null)
            {
                ChangeTimer(_streamTimer!, StreamDue());
                return;
            }

            Volatile.Write(ref _streamScheduled, 0);
            _streamTimeoutError = fired;
            // Wake the body loop wherever it waits: on the upstream (silent) or on the client (not reading).
            _streamInput?.CancelPendingRead();
            _client.Output.CancelPendingFlush();
            return;
        }
    }

    // ---- request head: the header timer (slowloris) -------------------------------------------------

    /// <summary>The request head did not arrive in one read: from now on it has <see cref="Http1ForwarderOptions.HeaderTimeout"/> to complete.</summary>
    private void ArmHeaderTimer()
    {
        if (_headerArmed || _isHttp2Lane || _options.HeaderTimeout == Timeout.InfiniteTimeSpan)
        {
            // Already armed for this head; or a lane of an HTTP/2 connection, whose session times header blocks itself.
            return;
        }

        _headerTimedOut = false;
        Volatile.Write(ref _headerStart, _time.GetTimestamp());
        _headerArmed = true;
        _headerTimer ??= _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnHeaderTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        ChangeTimer(_headerTimer, _options.HeaderTimeout);
    }

    private void DisarmHeaderTimer() => _headerArmed = false;

    /// <summary>The header timer fired for the head being read now (not a stale fire racing with an earlier head's end).</summary>
    private bool HeaderTimedOut => _headerTimedOut && _headerArmed && !_cancelled;

    private void OnHeaderTimer()
    {
        if (!_headerArmed)
        {
            return;
        }

        var elapsed = _time.GetElapsedTime(Volatile.Read(ref _headerStart));
        if (elapsed < _options.HeaderTimeout)
        {
            // Scheduled for an earlier head that has since completed: wait for what is left of this one's time.
            ChangeTimer(_headerTimer!, _options.HeaderTimeout - elapsed);
            return;
        }

        _headerTimedOut = true;
        _client.Input.CancelPendingRead();
    }

    private async ValueTask RespondHeaderTimeoutAsync()
    {
        BeginRequest();
        _status = 408;
        _error = ProxyErrors.HeaderTimeout;
        _proxyMade = true;
        var sentence = $"listener {_forwarder.Listener} closed the connection: the client did not send a whole request head within the header timeout of {Ms(_options.HeaderTimeout)} ms";
        Log.ProxyResponse(_forwarder.Logger, 408, ProxyErrors.HeaderTimeout, sentence);
        ProxyResponse.Write(_client.Output, 408, ProxyErrors.HeaderTimeout, sentence, close: true);
        await FlushClientAsync().ConfigureAwait(false);
        CompleteRequest();
    }
}

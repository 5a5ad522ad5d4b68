using System.Collections;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Metrics;

namespace Proxy.Core.Detection;

/// <summary>
/// Protocol detection for one capture listener: peeks (<c>recv(MSG_PEEK)</c>) the first bytes of an accepted
/// socket <b>before</b> the transport starts its loops, so nothing is consumed and an opaque connection can
/// still be taken over for splice(2). What the classifier does not claim within the timeout is opaque.
/// <code>
///   destination port in the opaque list? ── yes ─► Skipped (opaque, no wait, not counted)
///   │ no
///   bytes already queued? ── peek ── classifier decides ─► Detected          (synchronous, allocates nothing)
///   │ no, or not enough
///   wait for the first byte (zero-byte receive)  ┐
///   wait for more bytes (short polls, see below) ├─ peek again ─► Detected / ClientClosed
///   timeout ─► TimedOut (opaque)                 ┘
/// </code>
/// <para>Waiting for <i>more</i> bytes: a zero-byte receive completes at once while any byte is queued, so after a
/// peek that was not enough there is no readiness event to wait for. On Linux the <see cref="ReadableWaiter"/>
/// waits in its own epoll with <c>SO_RCVLOWAT</c> = bytes peeked + 1, so it wakes exactly when something new
/// arrived (or FIN), and the socket is never registered with .NET's socket engine (a spliced connection then
/// costs that engine nothing). Elsewhere (the portable fallback): a zero-byte receive for the first byte, then
/// polls after 1 ms, doubling up to 50 ms (reset whenever new bytes arrived), bounded by the timeout; it only
/// runs when a client's first 6-24 bytes are split across TCP segments, and it cannot see a FIN after a partial
/// start (that connection waits for the timeout).</para>
/// <para>Every finished detection (not the skipped ones) is counted in <c>proxy_detect_total{listener, protocol}</c>
/// with protocol = http1 | h2 | tls | opaque | timeout, and logged at debug level.</para>
/// </summary>
public sealed partial class ProtocolDetector
{
    private static readonly TimeSpan FirstPollDelay = TimeSpan.FromMilliseconds(1);
    private static readonly TimeSpan MaxPollDelay = TimeSpan.FromMilliseconds(50);
    private const int MaxPooledTimers = 64;

    private readonly ProtocolDetectorOptions _options;
    private readonly BitArray _opaquePorts = new(65536);
    private readonly ProxyMetrics _metrics;
    private readonly KeyValuePair<string, object?> _listenerTag;
    private readonly string _listener;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentQueue<CancellationTokenSource> _timers = new();
    private readonly ReadableWaiter? _waiter;

    public ProtocolDetector(string listener, ProtocolDetectorOptions options, ProxyMetrics metrics, ILogger? logger = null, TimeProvider? timeProvider = null)
        : this(listener, options, metrics, logger, timeProvider, ReadableWaiter.IsSupported ? ReadableWaiter.Shared : null)
    {
    }

    /// <param name="waiter">The epoll waiter for "more bytes"; null uses the portable fallback (zero-byte receive, then polling).</param>
    internal ProtocolDetector(string listener, ProtocolDetectorOptions options, ProxyMetrics metrics, ILogger? logger, TimeProvider? timeProvider, ReadableWaiter? waiter)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(metrics);
        if (options.Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Timeout, "The detection timeout must be positive.");
        }

        foreach (var port in options.OpaquePorts)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)port, 65535u, nameof(options));
            _opaquePorts[port] = true;
        }

        _listener = listener;
        _options = options;
        _metrics = metrics;
        _listenerTag = new KeyValuePair<string, object?>("listener", listener);
        _logger = logger ?? NullLogger.Instance;
        _time = timeProvider ?? TimeProvider.System;
        _waiter = waiter;
    }

    public ProtocolDetectorOptions Options => _options;

    /// <summary>Whether connections to <paramref name="port"/> skip detection.</summary>
    public bool IsOpaquePort(int port) => (uint)port <= 65535 && _opaquePorts[port];

    /// <summary>
    /// Detects the protocol of <paramref name="socket"/> (an accepted connection whose transport has not started)
    /// without consuming any byte. Never throws for socket errors: they end as <see cref="DetectionOutcome.Failed"/>.
    /// </summary>
    /// <param name="destinationPort">The original destination port, checked against the opaque ports.</param>
    /// <param name="cancellationToken">Ends the wait early (the result is then <see cref="DetectionOutcome.Failed"/>).</param>
    public ValueTask<DetectionResult> DetectAsync(Socket socket, int destinationPort, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (IsOpaquePort(destinationPort))
        {
            return new ValueTask<DetectionResult>(new DetectionResult(Protocol.Opaque, DetectionOutcome.Skipped, 0));
        }

        // Fast path: the client's first bytes are usually queued by the time the connection is accepted.
        var start = _time.GetTimestamp();
        // Linux: one non-blocking recv(MSG_PEEK); elsewhere FIONREAD, then a peek only if something is queued.
        if (_waiter is not null ? TryPeekReadable(socket, 0, out var result) : TryPeekAndClassify(socket, mayBlock: false, out result))
        {
            Record(result, destinationPort, start);
            return new ValueTask<DetectionResult>(result);
        }

        return _waiter is not null
            ? DetectWithWaiterAsync(socket, destinationPort, result.BytesPeeked, start, cancellationToken)
            : DetectSlowAsync(socket, destinationPort, result.BytesPeeked, start, cancellationToken);
    }

    /// <summary>Linux: wait in the epoll waiter until more bytes than already peeked are queued (SO_RCVLOWAT), then peek again.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<DetectionResult> DetectWithWaiterAsync(Socket socket, int destinationPort, int peeked, long start, CancellationToken cancellationToken)
    {
        var deadline = Environment.TickCount64 + (long)Math.Ceiling(_options.Timeout.TotalMilliseconds);
        DetectionResult result;
        while (true)
        {
            var outcome = await _waiter!.WaitAsync(socket, peeked + 1, deadline, cancellationToken).ConfigureAwait(false);
            if (outcome != WaitOutcome.Readable)
            {
                result = new DetectionResult(Protocol.Opaque, outcome == WaitOutcome.TimedOut ? DetectionOutcome.TimedOut : DetectionOutcome.Failed, peeked);
                break;
            }

            if (TryPeekReadable(socket, peeked, out result))
            {
                break;
            }

            peeked = result.BytesPeeked;
        }

        Record(result, destinationPort, start);
        return result;
    }

    /// <summary>
    /// Peeks after the waiter said readable. Readable but nothing new means FIN (or an error) after
    /// <paramref name="peeked"/> bytes: the client will send no more, so it is opaque (ClientClosed).
    /// </summary>
    private static bool TryPeekReadable(Socket socket, int peeked, out DetectionResult result)
    {
        Span<byte> buffer = stackalloc byte[ProtocolClassifier.MaxBytes];
        var n = ReadableWaiter.PeekNonBlocking(socket, buffer);
        if (n == -1)
        {
            // Spurious wakeup: nothing queued after all; wait again.
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Detected, peeked);
            return false;
        }

        if (n == -2)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Failed, peeked);
            return true;
        }

        if (ProtocolClassifier.TryClassify(buffer[..n], out var protocol))
        {
            result = new DetectionResult(protocol, DetectionOutcome.Detected, n);
            return true;
        }

        result = n <= peeked
            ? new DetectionResult(Protocol.Opaque, DetectionOutcome.ClientClosed, n)
            : new DetectionResult(Protocol.Opaque, DetectionOutcome.Detected, n);
        return n <= peeked;
    }

    // Pooling builder: a connection that has to wait does not allocate a fresh state machine box each time.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<DetectionResult> DetectSlowAsync(Socket socket, int destinationPort, int peeked, long start, CancellationToken cancellationToken)
    {
        var timer = RentTimer();
        var registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timer)
            : default;
        timer.CancelAfter(_options.Timeout);
        DetectionResult result;
        try
        {
            var delay = FirstPollDelay;
            while (true)
            {
                if (peeked == 0)
                {
                    // Nothing queued: a zero-byte receive completes when the first byte (or FIN, or an error) arrives.
                    await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, timer.Token).ConfigureAwait(false);
                }
                else
                {
                    await Task.Delay(delay, _time, timer.Token).ConfigureAwait(false);
                    delay = delay >= MaxPollDelay / 2 ? MaxPollDelay : delay * 2;
                }

                if (TryPeekAndClassify(socket, mayBlock: peeked == 0, out result))
                {
                    break;
                }

                if (result.BytesPeeked > peeked)
                {
                    delay = FirstPollDelay;
                }

                peeked = result.BytesPeeked;
            }
        }
        catch (OperationCanceledException) when (timer.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.TimedOut, peeked);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Failed, peeked);
        }
        finally
        {
            registration.Dispose();
            ReturnTimer(timer);
        }

        Record(result, destinationPort, start);
        return result;
    }

    /// <summary>
    /// Peeks what is queued and classifies it. False: undecided, with the bytes peeked so far in the result.
    /// <paramref name="mayBlock"/>: the socket was just reported readable, so a peek returns at once even when
    /// nothing is queued (FIN: 0 bytes, RST: an error).
    /// </summary>
    private static bool TryPeekAndClassify(Socket socket, bool mayBlock, out DetectionResult result)
    {
        result = default;
        int received;
        Span<byte> buffer = stackalloc byte[ProtocolClassifier.MaxBytes];
        try
        {
            if (!mayBlock && socket.Available == 0)
            {
                return false;
            }

            received = socket.Receive(buffer, SocketFlags.Peek, out var error);
            if (error != SocketError.Success)
            {
                if (error == SocketError.WouldBlock)
                {
                    return false;
                }

                result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Failed, 0);
                return true;
            }
        }
        catch (ObjectDisposedException)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Failed, 0);
            return true;
        }
        catch (SocketException)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Failed, 0);
            return true;
        }

        if (received == 0)
        {
            result = new DetectionResult(Protocol.Opaque, DetectionOutcome.ClientClosed, 0);
            return true;
        }

        if (ProtocolClassifier.TryClassify(buffer[..received], out var protocol))
        {
            result = new DetectionResult(protocol, DetectionOutcome.Detected, received);
            return true;
        }

        result = new DetectionResult(Protocol.Opaque, DetectionOutcome.Detected, received);
        return false;
    }

    private void Record(in DetectionResult result, int destinationPort, long start)
    {
        if (result.Outcome == DetectionOutcome.Failed)
        {
            Log.Failed(_logger, _listener, destinationPort, result.BytesPeeked);
            return;
        }

        _metrics.DetectTotal.Add(1, _listenerTag, new KeyValuePair<string, object?>("protocol", result.MetricTag));
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            var elapsedMs = _time.GetElapsedTime(start).TotalMilliseconds;
            Log.Detected(_logger, _listener, destinationPort, result.MetricTag, result.Outcome, result.BytesPeeked, elapsedMs);
        }
    }

    private CancellationTokenSource RentTimer()
        => _timers.TryDequeue(out var timer) ? timer : new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);

    private void ReturnTimer(CancellationTokenSource timer)
    {
        // TryReset stops the timer; it fails once the source was cancelled (timed out): such a source is dropped.
        if (_timers.Count < MaxPooledTimers && timer.TryReset())
        {
            _timers.Enqueue(timer);
        }
        else
        {
            timer.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1301, Level = LogLevel.Debug, Message = "{Listener}: connection to port {Port} detected as {Protocol} ({Outcome}, {Bytes} bytes peeked, {ElapsedMs} ms)")]
        public static partial void Detected(ILogger logger, string listener, int port, string protocol, DetectionOutcome outcome, int bytes, double elapsedMs);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Debug, Message = "{Listener}: connection to port {Port} failed during protocol detection ({Bytes} bytes peeked)")]
        public static partial void Failed(ILogger logger, string listener, int port, int bytes);
    }
}

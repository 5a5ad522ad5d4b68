using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;

namespace Proxy.Core.Tcp;

/// <summary>
/// Opaque TCP forwarding between two connections exposed as pipes (the portable path; see
/// <see cref="IRawSocketForwarder"/> for splice).
/// </summary>
/// <remarks>
/// <code>
///   downstream.Input ──copy──► upstream.Output      (bytes to upstream)
///   upstream.Input   ──copy──► downstream.Output    (bytes to downstream)
/// </code>
/// <list type="number">
/// <item>Each direction reads a buffer from its source and writes it straight into the other side's
/// <see cref="PipeWriter"/> (one copy, from receive block to send block; nothing in between), then flushes,
/// which is where backpressure from a slow receiver stops us reading.</item>
/// <item>FIN is propagated per direction: a source that completes normally completes the other side's
/// output normally (the transport sends FIN) while the other direction keeps running.</item>
/// <item>A reset is propagated: a source that fails (RST) completes the other side's output with the
/// exception (the transport resets that socket); a destination that stops accepting bytes counts as a
/// reset of that side. Either way the other direction is stopped and both connections are reset.</item>
/// <item>Idle timeout: no byte in either direction for <see cref="TcpForwardOptions.IdleTimeout"/>
/// aborts (resets) both sides. Cancellation does the same with outcome <see cref="TcpForwardOutcome.Aborted"/>.</item>
/// </list>
/// Per chunk nothing is allocated: one session object and two loop state machines per connection.
/// </remarks>
public sealed class PipeForwarder : IPipeForwarder
{
    private readonly TimeProvider _timeProvider;

    public PipeForwarder(TimeProvider? timeProvider = null)
    {
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    public async ValueTask<TcpForwardResult> ForwardAsync(IDuplexPipe downstream, IDuplexPipe upstream, TcpForwardOptions options, IForwardObserver? observer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(downstream);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(options);

        using var session = new Session(downstream, upstream, observer, _timeProvider, options.IdleTimeout);
        session.Start(cancellationToken);
        var toUpstream = session.CopyAsync(toUpstream: true);
        var toDownstream = session.CopyAsync(toUpstream: false);
        await toUpstream.ConfigureAwait(false);
        await toDownstream.ConfigureAwait(false);
        return session.Result();
    }

    private sealed class Session : IDisposable
    {
        private const int NoOutcome = -1;

        private readonly IDuplexPipe _downstream;
        private readonly IDuplexPipe _upstream;
        private readonly IForwardObserver? _observer;
        private readonly TimeProvider _timeProvider;
        private readonly TimeSpan _idleTimeout;
        private ITimer? _idleTimer;
        private CancellationTokenRegistration _cancellation;
        private long _lastActivity;
        private long _bytesToUpstream;
        private long _bytesToDownstream;
        private int _outcome = NoOutcome;
        private int _running = 2;
        private Exception? _terminationError;

        public Session(IDuplexPipe downstream, IDuplexPipe upstream, IForwardObserver? observer, TimeProvider timeProvider, TimeSpan idleTimeout)
        {
            _downstream = downstream;
            _upstream = upstream;
            _observer = observer;
            _timeProvider = timeProvider;
            _idleTimeout = idleTimeout;
            _lastActivity = timeProvider.GetTimestamp();
        }

        public void Start(CancellationToken cancellationToken)
        {
            if (_idleTimeout != Timeout.InfiniteTimeSpan && _idleTimeout > TimeSpan.Zero)
            {
                _idleTimer = _timeProvider.CreateTimer(static s => ((Session)s!).OnIdleTimer(), this, _idleTimeout, Timeout.InfiniteTimeSpan);
            }

            if (cancellationToken.CanBeCanceled)
            {
                _cancellation = cancellationToken.UnsafeRegister(
                    static s => ((Session)s!).Terminate(TcpForwardOutcome.Aborted, new ConnectionAbortedException("Forwarding was cancelled.")),
                    this);
            }
        }

        public TcpForwardResult Result()
        {
            var outcome = Volatile.Read(ref _outcome);
            return new TcpForwardResult(
                outcome == NoOutcome ? TcpForwardOutcome.Completed : (TcpForwardOutcome)outcome,
                _bytesToUpstream,
                _bytesToDownstream);
        }

        public async Task CopyAsync(bool toUpstream)
        {
            var source = toUpstream ? _downstream.Input : _upstream.Input;
            var destination = toUpstream ? _upstream.Output : _downstream.Output;
            var sourceReset = toUpstream ? TcpForwardOutcome.DownstreamReset : TcpForwardOutcome.UpstreamReset;
            var destinationReset = toUpstream ? TcpForwardOutcome.UpstreamReset : TcpForwardOutcome.DownstreamReset;
            Exception? resetWith = null;
            try
            {
                while (true)
                {
                    ReadResult result;
                    try
                    {
                        result = await source.ReadAsync().ConfigureAwait(false);
                    }
                    catch (Exception ex)
                    {
                        // The source connection was reset (or aborted): reset the destination too.
                        resetWith = Terminate(sourceReset, ex);
                        break;
                    }

                    if (result.IsCanceled)
                    {
                        // The other direction, the idle timer or cancellation tore the session down.
                        resetWith = TerminationError();
                        break;
                    }

                    var buffer = result.Buffer;
                    var length = buffer.Length;
                    if (length != 0)
                    {
                        foreach (var segment in buffer)
                        {
                            destination.Write(segment.Span);
                        }

                        Volatile.Write(ref _lastActivity, _timeProvider.GetTimestamp());
                        if (toUpstream)
                        {
                            _bytesToUpstream += length;
                            _observer?.OnBytesToUpstream(checked((int)length));
                        }
                        else
                        {
                            _bytesToDownstream += length;
                            _observer?.OnBytesToDownstream(checked((int)length));
                        }
                    }

                    source.AdvanceTo(buffer.End);

                    if (length != 0)
                    {
                        FlushResult flush;
                        try
                        {
                            flush = await destination.FlushAsync().ConfigureAwait(false);
                        }
                        catch (Exception ex)
                        {
                            resetWith = Terminate(destinationReset, ex);
                            break;
                        }

                        if (flush.IsCanceled)
                        {
                            resetWith = TerminationError();
                            break;
                        }

                        if (flush.IsCompleted)
                        {
                            // The destination stopped taking bytes: its connection failed under us.
                            resetWith = Terminate(destinationReset, new ConnectionResetException("The destination connection stopped accepting data."));
                            break;
                        }
                    }

                    if (result.IsCompleted)
                    {
                        // FIN from the source: FIN to the destination (below); the other direction goes on.
                        break;
                    }
                }
            }
            finally
            {
                await source.CompleteAsync().ConfigureAwait(false);
                await destination.CompleteAsync(resetWith).ConfigureAwait(false);
                Interlocked.Decrement(ref _running);
            }
        }

        /// <summary>Records the first terminal event and wakes both directions; returns the error to reset with.</summary>
        private Exception Terminate(TcpForwardOutcome outcome, Exception error)
        {
            if (Interlocked.CompareExchange(ref _outcome, (int)outcome, NoOutcome) == NoOutcome)
            {
                Volatile.Write(ref _terminationError, error);
                _downstream.Input.CancelPendingRead();
                _upstream.Input.CancelPendingRead();
                _downstream.Output.CancelPendingFlush();
                _upstream.Output.CancelPendingFlush();
            }

            return TerminationError();
        }

        private Exception TerminationError() =>
            Volatile.Read(ref _terminationError) ?? new ConnectionAbortedException("The forwarding session was torn down.");

        private void OnIdleTimer()
        {
            if (Volatile.Read(ref _running) == 0)
            {
                return;
            }

            var idle = _timeProvider.GetElapsedTime(Volatile.Read(ref _lastActivity));
            if (idle >= _idleTimeout)
            {
                Terminate(TcpForwardOutcome.IdleTimeout, new ConnectionAbortedException($"No data in either direction for {_idleTimeout.TotalSeconds:0.###} s."));
                return;
            }

            try
            {
                _idleTimer?.Change(_idleTimeout - idle, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
                // The session ended meanwhile.
            }
        }

        public void Dispose()
        {
            _idleTimer?.Dispose();
            _cancellation.Dispose();
        }
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Tasks.Sources;
using Proxy.Core.Transport;

namespace Proxy.Http.Http2.Client;

/// <summary>
/// One request/response exchange on an <see cref="Http2ClientConnection"/> (from <see cref="Http2ClientConnection.TryOpenStream"/>).
/// <code>
/// request:  WriteHeadersAsync(fields, endStream) ─► [WriteDataAsync(body, endStream)]* ─► [WriteTrailersAsync(trailers)]
/// response: ReadResponseHeadAsync() (1xx heads first, one call each) ─► ResponseBody (PipeReader) ─► Trailers
/// outcome:  Completion (END_STREAM, RST_STREAM with code, refused by GOAWAY, connection lost)
/// </code>
/// The stream id is assigned when the HEADERS leave (under the connection's write lock), so ids grow in the order
/// streams really open whatever order callers open them in (RFC 9113 §5.1.1). Writes return false once the stream
/// has ended (see <see cref="Completion"/>). Response body bytes are credited back to the server (WINDOW_UPDATE,
/// per half window) only as the consumer advances <see cref="ResponseBody"/>, so at most one stream window of
/// unread body is buffered. Dispose when done: an unfinished stream is reset with CANCEL.
/// </summary>
public sealed class Http2ClientStream : IDisposable, IValueTaskSource<Http2ClientResponseHead>
{
    private readonly Http2ClientConnection _connection;
    private readonly SpinLatch _sync = new();
    // Heads that arrived before a read took them; created on first use (a waiting reader is handed its head directly).
    private Queue<Http2ClientResponseHead>? _heads;
    // Synchronous continuations: End runs them, and End is never called under a lock (see Http2ClientConnection).
    // Created when someone asks for Completion (most ends are read with TryGetEnd); one per stream use, since callers
    // may still hold the last one's task when the object is reused.
    private TaskCompletionSource<Http2StreamEnd>? _completion;
    // Never pauses: the stream receive window already bounds what can be buffered, and the frame loop must not block.
    // Inline reader: the frame loop runs the consumer's continuation itself (no thread-pool hop per DATA frame); it
    // never writes or completes this pipe under a lock (WriteBody, End).
    private readonly InlinePipe _body;
    private readonly Http2ClientBodyReader _bodyReader;
    private TaskCompletionSource? _headWaiter;
    // A token-less ReadResponseHeadAsync waiting (completed outside the lock by EnqueueHead or End).
    private ManualResetValueTaskSourceCore<Http2ClientResponseHead> _headRead;
    private bool _headReadPending;
    private TaskCompletionSource? _windowWaiter;
    private Http2StreamEnd? _end;
    private bool _bodyWriterDone;
    private bool _bodyWriting;
    private bool _bodyCompletePending;
    private bool _readerDone;
    private long _buffered;
    private bool _disposed;
    // A head and a field list kept from earlier heads and trailers (buffers included), for the next ones.
    private Http2ClientResponseHead? _spareHead;
    private Http2FieldList? _spareFields;

    // Connection-owned state, guarded by the connection's lock.
    internal Http2FlowWindow SendWindow;
    internal Http2ReceiveWindow ReceiveWindow;
    internal bool HeadersSent;
    internal bool LocalClosed;
    internal bool RemoteClosed;
    internal bool FinalHeadReceived;
    internal bool Released;
    internal int InterimCount;
    internal bool IsHeadRequest;
    internal long ExpectedLength = -1;
    internal long ReceivedLength;

    internal Http2ClientStream(Http2ClientConnection connection)
    {
        _connection = connection;
        _body = new InlinePipe(keepSegment: false);
        _bodyReader = new Http2ClientBodyReader(_body.Reader, this);
    }

    /// <summary>The stream id (0 until the HEADERS are written).</summary>
    public uint Id { get; internal set; }

    /// <summary>Completes when the stream ends: how (END_STREAM, reset, refused, connection lost). Never faults.</summary>
    public Task<Http2StreamEnd> Completion
    {
        get
        {
            using (_sync.EnterScope())
            {
                if (_completion is null)
                {
                    _completion = new TaskCompletionSource<Http2StreamEnd>();
                    if (_end is { } end)
                    {
                        // Nothing awaits it yet: completing it under the lock runs no continuation.
                        _completion.TrySetResult(end);
                    }
                }

                return _completion.Task;
            }
        }
    }

    /// <summary>How the stream ended, if it has (without allocating, unlike <see cref="Completion"/>).</summary>
    public bool TryGetEnd(out Http2StreamEnd end)
    {
        using (_sync.EnterScope())
        {
            end = _end ?? default;
            return _end is not null;
        }
    }

    /// <summary>The response body (DATA payloads in order). Completes at END_STREAM; fails with <see cref="Http2StreamAbortedException"/> otherwise.</summary>
    public PipeReader ResponseBody => _bodyReader;

    /// <summary>Response trailers (a HEADERS with END_STREAM after the final head), once the body has ended; null when none came.</summary>
    public Http2FieldList? Trailers { get; internal set; }

    /// <summary>Sends the request head (pseudo-headers first, whatever their place in <paramref name="fields"/>); false when the stream already ended (refused, connection gone).</summary>
    public ValueTask<bool> WriteHeadersAsync(Http2FieldList fields, bool endStream, CancellationToken cancellationToken = default) =>
        _connection.WriteHeadersAsync(this, fields, endStream, trailers: false, cancellationToken);

    /// <summary>Sends request body bytes as DATA frames within the stream and connection windows, waiting for WINDOW_UPDATE as needed; false when the stream ended.</summary>
    public ValueTask<bool> WriteDataAsync(ReadOnlySequence<byte> data, bool endStream, CancellationToken cancellationToken = default) =>
        _connection.WriteDataAsync(this, data, endStream, cancellationToken);

    /// <summary>Sends request trailers (HEADERS with END_STREAM; pseudo-headers are not allowed); false when the stream ended.</summary>
    public ValueTask<bool> WriteTrailersAsync(Http2FieldList trailers, CancellationToken cancellationToken = default) =>
        _connection.WriteHeadersAsync(this, trailers, endStream: true, trailers: true, cancellationToken);

    /// <summary>Resets the stream (RST_STREAM with <paramref name="code"/> if it was opened on the wire). Idempotent.</summary>
    public void Reset(Http2ErrorCode code) => _connection.ResetStream(this, code, "reset by the caller");

    /// <summary>
    /// The next response head: interim 1xx heads first (one per call, <see cref="Http2ClientResponseHead.IsInformational"/>),
    /// then the final head. Throws <see cref="Http2StreamAbortedException"/> if the stream ends without one. One read at a time.
    /// </summary>
    public ValueTask<Http2ClientResponseHead> ReadResponseHeadAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.CanBeCanceled)
        {
            return ReadResponseHeadCancelableAsync(cancellationToken);
        }

        // Without a token (the upstream exchange): a wait completes through the stream's own reusable source, so no
        // state machine or task is allocated per response.
        using (_sync.EnterScope())
        {
            if (_heads is not null && _heads.TryDequeue(out var head))
            {
                return new ValueTask<Http2ClientResponseHead>(head);
            }

            if (_end is { } end)
            {
                return ValueTask.FromException<Http2ClientResponseHead>(NoHead(end));
            }

            if (_headReadPending)
            {
                throw new InvalidOperationException("A response head read is already pending on this stream.");
            }

            _headRead.Reset();
            _headReadPending = true;
            return new ValueTask<Http2ClientResponseHead>(this, _headRead.Version);
        }
    }

    // Pooled builder: the read usually waits for the server, which would allocate the state machine box per response.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Http2ClientResponseHead> ReadResponseHeadCancelableAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            using (_sync.EnterScope())
            {
                if (_heads is not null && _heads.TryDequeue(out var head))
                {
                    return head;
                }

                if (_end is { } end)
                {
                    throw NoHead(end);
                }

                // Synchronous continuation: EnqueueHead and End complete it outside every lock.
                _headWaiter ??= new TaskCompletionSource();
                wait = _headWaiter.Task;
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static Http2StreamAbortedException NoHead(Http2StreamEnd end) =>
        new(end.IsCompleted ? new Http2StreamEnd(Http2StreamEndKind.ConnectionLost, Http2ErrorCode.ProtocolError, "no final head") : end);

    Http2ClientResponseHead IValueTaskSource<Http2ClientResponseHead>.GetResult(short token) => _headRead.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<Http2ClientResponseHead>.GetStatus(short token) => _headRead.GetStatus(token);

    void IValueTaskSource<Http2ClientResponseHead>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _headRead.OnCompleted(continuation, state, token, flags);

    /// <summary>Resets the stream with CANCEL unless it already ended; returns pooled buffers (heads not taken, <see cref="Trailers"/>: read them first).</summary>
    public void Dispose()
    {
        using (_sync.EnterScope())
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _connection.ResetStream(this, Http2ErrorCode.Cancel, "disposed before the end");
        _bodyReader.Complete();
        // Each head is taken under the latch and returned (ReturnHead takes the latch again) outside it.
        while (TryDequeueHead(out var head))
        {
            head.Dispose();
        }

        if (Trailers is { } trailers)
        {
            Trailers = null;
            ReturnFields(trailers);
        }

        // The owner is done with it: the connection may hand this object (pipe, reader, lock) to a later stream.
        _connection.Retire(this);
    }

    private bool TryDequeueHead([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Http2ClientResponseHead? head)
    {
        using (_sync.EnterScope())
        {
            head = null;
            return _heads is not null && _heads.TryDequeue(out head);
        }
    }

    /// <summary>A field list for a head or trailers being received (the frame loop).</summary>
    internal Http2FieldList TakeFields()
    {
        using (_sync.EnterScope())
        {
            var fields = _spareFields;
            _spareFields = null;
            return fields ?? new Http2FieldList();
        }
    }

    /// <summary>A head for a received head block (the frame loop).</summary>
    internal Http2ClientResponseHead CreateHead(int status, Http2FieldList fields)
    {
        Http2ClientResponseHead? head;
        using (_sync.EnterScope())
        {
            head = _spareHead;
            _spareHead = null;
        }

        if (head is null)
        {
            return new Http2ClientResponseHead(status, fields, this);
        }

        head.Reuse(status, fields);
        return head;
    }

    /// <summary>The consumer disposed a head: it and its fields are kept for the next head, or let go.</summary>
    internal void ReturnHead(Http2ClientResponseHead head)
    {
        var fields = head.Fields;
        using (_sync.EnterScope())
        {
            _spareHead ??= head;
            if (_spareFields is null)
            {
                fields.Clear();
                _spareFields = fields;
                return;
            }
        }

        fields.Dispose();
    }

    private void ReturnFields(Http2FieldList fields)
    {
        using (_sync.EnterScope())
        {
            if (_spareFields is null)
            {
                fields.Clear();
                _spareFields = fields;
                return;
            }
        }

        fields.Dispose();
    }

    /// <summary>
    /// True when the object can carry another stream: disposed, ended, and both ends of the body pipe completed (the
    /// frame loop, the only caller, holds no reference to it and no body write is in progress).
    /// </summary>
    internal bool CanBeReused
    {
        get
        {
            using (_sync.EnterScope())
            {
                return _disposed && _end is not null && _bodyWriterDone && !_bodyWriting && !_bodyCompletePending && _readerDone && !_headReadPending;
            }
        }
    }

    /// <summary>Makes a retired stream new (see <see cref="Http2ClientConnection.Retire"/>); called by the frame loop only.</summary>
    internal void ResetForReuse()
    {
        _body.Reset();
        _bodyReader.ResetForReuse();
        _completion = null;
        _headWaiter = null;
        _windowWaiter = null;
        _end = null;
        _bodyWriterDone = false;
        _bodyWriting = false;
        _bodyCompletePending = false;
        _readerDone = false;
        _buffered = 0;
        _disposed = false;
        _headReadPending = false;
        SendWindow = default;
        ReceiveWindow = default;
        HeadersSent = false;
        LocalClosed = false;
        RemoteClosed = false;
        FinalHeadReceived = false;
        Released = false;
        InterimCount = 0;
        IsHeadRequest = false;
        ExpectedLength = -1;
        ReceivedLength = 0;
        Id = 0;
        Trailers = null;
    }

    // ---- called by the connection -------------------------------------------------------------------

    internal bool HasEnded
    {
        get
        {
            using (_sync.EnterScope())
            {
                return _end is not null;
            }
        }
    }

    /// <summary>Queues a response head; <paramref name="wake"/> false leaves the reader asleep (the <see cref="End"/> that follows wakes it).</summary>
    internal void EnqueueHead(Http2ClientResponseHead head, bool wake = true)
    {
        TaskCompletionSource? waiter = null;
        var handed = false;
        bool unwanted;
        using (_sync.EnterScope())
        {
            // An unwanted head is disposed after the latch is left: it goes back to this stream's spares under it.
            unwanted = _end is not null || _disposed;
            if (!unwanted && wake && _headReadPending && (_heads is null || _heads.Count == 0))
            {
                // Straight to the waiting reader.
                _headReadPending = false;
                handed = true;
            }
            else if (!unwanted)
            {
                (_heads ??= new Queue<Http2ClientResponseHead>(2)).Enqueue(head);
                if (!wake)
                {
                    return;
                }

                waiter = _headWaiter;
                _headWaiter = null;
            }
        }

        if (unwanted)
        {
            head.Dispose();
            return;
        }

        if (handed)
        {
            _headRead.SetResult(head);
        }

        waiter?.TrySetResult();
    }

    /// <summary>
    /// Hands a head queued without waking (<see cref="EnqueueHead"/> with wake false) to the reader waiting for it, if
    /// the stream has not ended meanwhile (<see cref="End"/> hands it itself) and the reader is there.
    /// </summary>
    internal void WakeQueuedHead()
    {
        Http2ClientResponseHead? head = null;
        TaskCompletionSource? waiter;
        using (_sync.EnterScope())
        {
            if (_end is not null || _disposed || _heads is null || _heads.Count == 0)
            {
                return;
            }

            if (_headReadPending)
            {
                _headReadPending = false;
                head = _heads.Dequeue();
            }

            waiter = _headWaiter;
            _headWaiter = null;
        }

        if (head is not null)
        {
            _headRead.SetResult(head);
        }

        waiter?.TrySetResult();
    }

    /// <summary>
    /// Appends a DATA payload to the body; false when the consumer is gone (the caller then credits the bytes at once).
    /// With <paramref name="flush"/> false the bytes wait for the <see cref="End"/> that follows (END_STREAM): the
    /// consumer sees them and the end together. Called by the frame loop only, under no lock: the flush may run the
    /// consumer inline, which may call back into the stream (End, Dispose) and the connection.
    /// </summary>
    internal bool WriteBody(in ReadOnlySequence<byte> payload, bool flush = true)
    {
        var writer = _body.Writer;
        using (_sync.EnterScope())
        {
            if (_bodyWriterDone || _readerDone)
            {
                return false;
            }

            _buffered += payload.Length;
            foreach (var segment in payload)
            {
                writer.Write(segment.Span);
            }

            if (!flush)
            {
                return true;
            }

            // An End meanwhile (another thread, or the consumer run inline by the flush) leaves completing the writer to us.
            _bodyWriting = true;
        }

        // Completes synchronously: the pipe never pauses (pauseWriterThreshold 0). The result is decided before the
        // reader runs, so a consumer that completes inline still counts as alive for these bytes (it credits them).
        var result = writer.FlushAsync();
        var alive = !result.IsCompleted || !result.Result.IsCompleted;
        Exception? completeWith = null;
        bool complete;
        using (_sync.EnterScope())
        {
            _bodyWriting = false;
            complete = _bodyCompletePending;
            _bodyCompletePending = false;
            if (complete)
            {
                completeWith = BodyError(_end!.Value);
            }
        }

        if (complete)
        {
            writer.Complete(completeWith);
        }

        return alive;
    }

    private static Http2StreamAbortedException? BodyError(Http2StreamEnd end) => end.IsCompleted ? null : new Http2StreamAbortedException(end);

    /// <summary>
    /// Ends the stream (first call wins): completes the body, wakes readers and writers, resolves <see cref="Completion"/>.
    /// Never call it under the connection's locks: the body reader, the head reader and <see cref="Completion"/>'s
    /// awaiters run inline.
    /// </summary>
    internal bool End(Http2StreamEnd end)
    {
        TaskCompletionSource? headWaiter;
        TaskCompletionSource<Http2StreamEnd>? completion;
        var completeBody = false;
        var wakeHeadRead = false;
        Http2ClientResponseHead? pendingHead = null;
        using (_sync.EnterScope())
        {
            if (_end is not null)
            {
                return false;
            }

            _end = end;
            completion = _completion;
            headWaiter = _headWaiter;
            _headWaiter = null;
            if (_headReadPending)
            {
                _headReadPending = false;
                wakeHeadRead = true;
                _heads?.TryDequeue(out pendingHead);
            }
            if (!_bodyWriterDone)
            {
                _bodyWriterDone = true;
                // A WriteBody flushing right now (its consumer may be what called us) completes the writer after its flush.
                if (_bodyWriting)
                {
                    _bodyCompletePending = true;
                }
                else
                {
                    completeBody = true;
                }
            }
        }

        if (completeBody)
        {
            // Outside the lock: with the inline reader this runs the consumer.
            _body.Writer.Complete(BodyError(end));
        }

        if (wakeHeadRead)
        {
            if (pendingHead is not null)
            {
                _headRead.SetResult(pendingHead);
            }
            else
            {
                _headRead.SetException(NoHead(end));
            }
        }

        headWaiter?.TrySetResult();
        SignalWindow();
        completion?.TrySetResult(end);
        return true;
    }

    internal void OnBodyConsumed(long bytes)
    {
        using (_sync.EnterScope())
        {
            _buffered -= bytes;
        }

        _connection.OnBodyConsumed(this, bytes);
    }

    /// <summary>The consumer completed the body reader: bytes it left unread are credited now, so the connection window does not leak.</summary>
    internal void OnReaderCompleted()
    {
        long rest;
        using (_sync.EnterScope())
        {
            if (_readerDone)
            {
                return;
            }

            _readerDone = true;
            rest = _buffered;
            _buffered = 0;
        }

        if (rest > 0)
        {
            _connection.OnBodyConsumed(this, rest);
        }
    }

    internal void SignalWindow() => Interlocked.Exchange(ref _windowWaiter, null)?.TrySetResult();

    /// <summary>A task completing at the next <see cref="SignalWindow"/>; the window must be checked again after taking it.</summary>
    internal Task WaitForWindowAsync()
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _windowWaiter, waiter);
        return waiter.Task;
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Transport;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// An in-memory HTTP/1.1 connection between an HTTP/2 connection and the HTTP/1.1 forwarder: the HTTP/2 side
/// writes each stream's request as HTTP/1.1 bytes into <see cref="RequestWriter"/> and reads the forwarder's
/// response from <see cref="ResponseReader"/> (its head usually filled typed into <see cref="ResponseHead"/>, see
/// <see cref="SetTypedHead"/>; proxy-made answers and 1xx heads as HTTP/1.1 text). The forwarder's session on the lane routes, balances,
/// pools, retries, times out, explains its failures and records telemetry exactly as for a TCP client. A lane
/// carries one stream at a time and is reused (keep-alive) by the next stream, so steady-state streams build
/// no new session. Request bytes the forwarder consumes are reported to <see cref="Consumed"/>, which the
/// stream turns into HTTP/2 flow-control credit: the client can never have more request body in flight than
/// the windows it was granted.
/// </summary>
internal sealed class Http2Lane : ConnectionContext, IValueTaskSource<Http2ServerStream?>
{
    private static long s_lastId;

    private readonly InlinePipe _request;
    private readonly InlinePipe _response;
    private readonly CountingReader _requestReader;
    private readonly FeatureCollection _features = new();
    private readonly CancellationTokenSource _closed;
    private readonly long _id = Interlocked.Increment(ref s_lastId);
    private IDictionary<object, object?>? _items;
    private string? _connectionId;

    /// <param name="connectionClosed">The HTTP/2 connection's token: the lane closes with it.</param>
    public Http2Lane(EndPoint? local, EndPoint? remote, MemoryPool<byte> pool, CancellationToken connectionClosed = default)
    {
        // One linked source per lane (lanes are reused across streams): the forwarder's session on the lane is
        // cancelled when the connection ends and when the lane's own stream is reset (see Close/Reset).
        _closed = connectionClosed.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(connectionClosed) : new CancellationTokenSource();
        // No pause thresholds on the request side: HTTP/2 flow control bounds what the client may send, and the
        // connection's read loop must never wait on one stream's consumer. The response side pauses the
        // forwarder when the HTTP/2 side (the client's windows) cannot keep up. Idle lanes wait in their connection's
        // pool between streams, so their pipes give their memory back when empty (keepSegment: false).
        _request = new InlinePipe(pool, pauseWriterThreshold: 0, keepSegment: false);
        _response = new InlinePipe(pool, pauseWriterThreshold: 256 * 1024, resumeWriterThreshold: 128 * 1024, keepSegment: false);
        _requestReader = new CountingReader(_request.Reader, this);
        Transport = new LanePipe(_requestReader, _response.Writer);
        LocalEndPoint = local;
        RemoteEndPoint = remote;
        ConnectionClosed = _closed.Token;
    }

    /// <summary>Called with the number of request bytes the forwarder consumed (on the forwarder's thread).</summary>
    public Action<Http2Lane, long>? Consumed { get; set; }

    /// <summary>The stream the lane serves now (null when idle).</summary>
    public Http2ServerStream? Stream { get; set; }

    /// <summary>The forwarder's session on this lane; completes when the lane is closed.</summary>
    public Task Session { get; set; } = Task.CompletedTask;

    // The lane's response pump (Http2ServerSession.PumpLaneAsync) waits here for the next stream to carry: one
    // long-lived loop per lane instead of one async call per stream, so steady-state streams allocate no state machine.
    // _next is armed (Reset) before the lane can be rented, and completed once: with the stream (Assign) or null (Close).
    private ManualResetValueTaskSourceCore<Http2ServerStream?> _next;
    private readonly SpinLatch _nextLock = new();
    private int _nextState; // 0 = not armed (pumping a stream), 1 = armed and waiting, 2 = completed
    private bool _closing;

    /// <summary>The lane's pump loop; completes when the lane is closed.</summary>
    public Task Pump { get; set; } = Task.CompletedTask;

    /// <summary>Arms the lane for its next stream; false when the lane is closing (its pump should end).</summary>
    public bool ArmForNextStream()
    {
        using (_nextLock.EnterScope())
        {
            if (_closing)
            {
                return false;
            }

            _next.Reset();
            _nextState = 1;
            _typedHead = false;
            return true;
        }
    }

    /// <summary>Hands the lane (armed, just rented) its stream: its pump starts on it, inline.</summary>
    public void Assign(Http2ServerStream stream)
    {
        using (_nextLock.EnterScope())
        {
            if (_nextState != 1)
            {
                throw new InvalidOperationException("The lane was not waiting for a stream.");
            }

            _nextState = 2;
        }

        _next.SetResult(stream);
    }

    /// <summary>The next stream to pump, or null once the lane is closed.</summary>
    public ValueTask<Http2ServerStream?> NextStreamAsync() => new(this, _next.Version);

    Http2ServerStream? IValueTaskSource<Http2ServerStream?>.GetResult(short token) => _next.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<Http2ServerStream?>.GetStatus(short token) => _next.GetStatus(token);

    void IValueTaskSource<Http2ServerStream?>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _next.OnCompleted(continuation, state, token, flags);

    private void StopPump()
    {
        bool wake;
        using (_nextLock.EnterScope())
        {
            _closing = true;
            wake = _nextState == 1;
            if (wake)
            {
                _nextState = 2;
            }
        }

        if (wake)
        {
            _next.SetResult(null);
        }
    }

    // The forwarder filled ResponseHead itself (typed, no HTTP/1.1 head in the response pipe); the pump takes it at its
    // next wake (a flush with body bytes, or an empty cancelled read).
    private volatile bool _typedHead;

    /// <summary>The forwarder filled <see cref="ResponseHead"/> for the current stream; the body follows in the pipe.</summary>
    public void SetTypedHead() => _typedHead = true;

    /// <summary>True once for a head set by <see cref="SetTypedHead"/>.</summary>
    public bool TakeTypedHead()
    {
        if (!_typedHead)
        {
            return false;
        }

        _typedHead = false;
        return true;
    }

    // The next stream's request head, parsed by the HTTP/2 side (TrySetTypedRequest) and swapped with the forwarder's
    // previous head when the forwarder takes it: two heads per lane, so the HTTP/2 side never fills the one the
    // forwarder still reads (its access log reads it after the response has gone).
    private Http1RequestHead _spareRequest = new();
    private volatile bool _typedRequest;

    /// <summary>
    /// Parses the stream's HTTP/1.1 request head (<paramref name="text"/>) here, with the forwarder's parser, instead
    /// of writing it into the request pipe for the forwarder to parse; false (nothing changed) when the parser refuses
    /// it, so the caller writes the text and the forwarder answers the refusal as for any client. Call
    /// <see cref="WakeForTypedRequest"/> after the lane was assigned.
    /// </summary>
    public bool TrySetTypedRequest(ReadOnlySpan<byte> text, Http1RequestHeadParser parser)
    {
        try
        {
            if (!parser.TryParseCopy(text, _spareRequest))
            {
                return false;
            }
        }
        catch (Http1ParseException)
        {
            return false;
        }

        _typedRequest = true;
        return true;
    }

    /// <summary>Wakes the forwarder's read (empty, cancelled) to take the head set by <see cref="TrySetTypedRequest"/>.</summary>
    public void WakeForTypedRequest() => _request.Reader.CancelPendingRead();

    /// <summary>The forwarder: swaps <paramref name="head"/> for the parsed head, once per <see cref="TrySetTypedRequest"/>.</summary>
    public bool TryTakeTypedRequest(ref Http1RequestHead head)
    {
        if (!_typedRequest)
        {
            return false;
        }

        _typedRequest = false;
        (head, _spareRequest) = (_spareRequest, head);
        return true;
    }

    /// <summary>Set when the forwarder aborted the lane (a failure after the response head was sent).</summary>
    public bool Aborted { get; private set; }

    /// <summary>The response head of the stream this lane carries (one at a time): parsed from the pipe, or filled typed by the forwarder.</summary>
    public Http1ResponseHead ResponseHead { get; } = new();

    public ContentLengthBodyReader LengthReader { get; } = new();

    public ChunkedBodyReader ChunkReader { get; } = new();

    /// <summary>The HTTP/2 side writes request bytes here.</summary>
    public PipeWriter RequestWriter => _request.Writer;

    /// <summary>The HTTP/2 side reads the forwarder's response bytes here.</summary>
    public PipeReader ResponseReader => _response.Reader;

    public override IDuplexPipe Transport { get; set; }

    public override string ConnectionId
    {
        get => _connectionId ??= "H2L" + _id.ToString("X8", System.Globalization.CultureInfo.InvariantCulture);
        set => _connectionId = value;
    }

    public override IFeatureCollection Features => _features;

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new Dictionary<object, object?>();
        set => _items = value;
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        Aborted = true;
        _response.Writer.Complete(abortReason);
        _request.Reader.Complete();
        StopPump();
        Cancel();
    }

    /// <summary>Ends the lane: the forwarder sees the client close.</summary>
    public void Close()
    {
        _request.Writer.Complete();
        StopPump();
        Cancel();
    }

    /// <summary>
    /// The client reset the lane's stream: the forwarder's session is cancelled wherever it waits (request body,
    /// response head, response body, flush), so its upstream exchange is abandoned (an HTTP/1.1 upstream connection
    /// is closed, an HTTP/2 upstream stream reset) and the upstream learns the call is over. The lane is not reused.
    /// </summary>
    public void Reset()
    {
        _request.Writer.Complete(new ConnectionAbortedException("The client reset the HTTP/2 stream."));
        _response.Reader.CancelPendingRead();
        StopPump();
        Cancel();
    }

    public override ValueTask DisposeAsync()
    {
        _closed.Dispose();
        ResponseHead.Dispose();
        _spareRequest.Dispose();
        return base.DisposeAsync();
    }

    private void Cancel()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private sealed class LanePipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>Reports consumed bytes: the difference between the last buffer's start and the consumed position.</summary>
    private sealed class CountingReader(PipeReader inner, Http2Lane lane) : PipeReader, IValueTaskSource<ReadResult>
    {
        private ReadOnlySequence<byte> _last;
        private ManualResetValueTaskSourceCore<ReadResult> _read;
        private System.Runtime.CompilerServices.ValueTaskAwaiter<ReadResult> _pending;
        private Action? _onInnerCompleted;

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            var count = _last.IsEmpty ? 0 : _last.Slice(_last.Start, consumed).Length;
            _last = default;
            inner.AdvanceTo(consumed, examined);
            if (count > 0)
            {
                lane.Consumed?.Invoke(lane, count);
            }
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            // CA2012: the read is consumed once, either here when it has completed or by OnInnerCompleted when it has.
#pragma warning disable CA2012
            var read = inner.ReadAsync(cancellationToken);
#pragma warning restore CA2012
            if (read.IsCompletedSuccessfully)
            {
                var result = read.Result;
                _last = result.Buffer;
                return new ValueTask<ReadResult>(result);
            }

            // The forwarder's reads wait here whenever the client's bytes have not arrived yet: completed through
            // this reader's own reusable source (an async helper would allocate a state machine per wait under load).
            _read.Reset();
            _pending = read.GetAwaiter();
            _pending.UnsafeOnCompleted(_onInnerCompleted ??= OnInnerCompleted);
            return new ValueTask<ReadResult>(this, _read.Version);
        }

        public override bool TryRead(out ReadResult result)
        {
            if (inner.TryRead(out result))
            {
                _last = result.Buffer;
                return true;
            }

            return false;
        }

        private void OnInnerCompleted()
        {
            ReadResult result;
            try
            {
                result = _pending.GetResult();
            }
            catch (Exception e)
            {
                _pending = default;
                _read.SetException(e);
                return;
            }

            _pending = default;
            _last = result.Buffer;
            _read.SetResult(result);
        }

        ReadResult IValueTaskSource<ReadResult>.GetResult(short token) => _read.GetResult(token);

        ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _read.GetStatus(token);

        void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _read.OnCompleted(continuation, state, token, flags);
    }
}

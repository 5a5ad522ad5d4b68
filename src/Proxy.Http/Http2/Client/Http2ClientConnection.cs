using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Transport;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Http2.Client;

/// <summary>
/// The client side of one HTTP/2 connection (h2c with prior knowledge, or h2 over a TLS stream negotiated elsewhere)
/// to an upstream: many concurrent request streams over one transport.
/// <code>
/// StartAsync ─► preface + SETTINGS (ENABLE_PUSH=0, INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE, HEADER_TABLE_SIZE)
///               + WINDOW_UPDATE(0) up to the connection window; then the frame loop runs until the end:
///   SETTINGS ─► apply (MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE delta, MAX_FRAME_SIZE, HEADER_TABLE_SIZE), ACK
///   PING ─► ACK · WINDOW_UPDATE ─► credit, wake senders · RST_STREAM ─► stream ends (REFUSED_STREAM: retryable)
///   GOAWAY ─► no new streams; streams above last-stream-id end Refused; the rest finish
///   HEADERS [+CONTINUATION] ─► HPACK ─► Http2ResponseCollector (§8.2/8.3 checks) ─► 1xx / final head / trailers
///       malformed ─► RST_STREAM PROTOCOL_ERROR · DATA ─► windows checked ─► the stream's body pipe
///   PUSH_PROMISE ─► GOAWAY PROTOCOL_ERROR (we sent ENABLE_PUSH=0)
/// TryOpenStream ─► Http2ClientStream: WriteHeadersAsync (id assigned, HPACK under the write lock) ─► WriteDataAsync
///               ─► WriteTrailersAsync; body consumed by the caller ─► WINDOW_UPDATE per half window
/// connection error ─► GOAWAY(code) and every open stream ends ConnectionLost
/// </code>
/// Locks: <c>_writeLock</c> (async; owns the output pipe, the HPACK encoder and the header block buffer) may be
/// held while taking <c>_lock</c> (state: stream table, windows, limits), never the other way round.
/// Inline delivery: a stream's head, body and end reach its consumer synchronously (no thread-pool hop): the frame
/// loop's EnqueueHead / WriteBody / End run the consumer's continuation (the upstream exchange, the forwarder) on
/// the loop's thread. So none of them is ever called under <c>_lock</c>, <c>_writeLock</c> or the stream's lock;
/// waking the frame loop (<c>CancelPendingRead</c>, which may run the loop inline) is never done under <c>_lock</c>;
/// and the frame loop touches no stream after delivering its END_STREAM (the consumer may have disposed it).
/// Waiters of <c>_writeLock</c> (SemaphoreSlim) and of the window signal still resume on the thread pool.
/// </summary>
public sealed partial class Http2ClientConnection : IAsyncDisposable, IHttp2OutputOwner
{
    private readonly Http2ClientOptions _options;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly Http2Frame _frame = new();
    private readonly Http2HeaderBlockAssembler _assembler;
    private readonly HpackDecoder _decoder;
    private readonly HpackEncoder _encoder = new();
    private readonly ArrayBufferWriter<byte> _block = new(512);
    private readonly Http2ResponseCollector _collector = new();
    private readonly Dictionary<uint, Http2ClientStream> _streams = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SpinLatch _lock = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _goingAwayTask = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<bool> _peerSettings = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _firstFrameSeen;
    private string? _closeReason;

    private Http2FlowWindow _connectionSendWindow = new();
    private Http2ReceiveWindow _connectionReceiveWindow = new();
    private int _peerInitialWindow = Http2Constants.DefaultInitialWindowSize;
    private uint _peerMaxFrameSize = Http2Constants.DefaultMaxFrameSize;
    private int _peerMaxConcurrentStreams;
    private int _pendingTableSize = -1;
    private bool _settingsAcked;
    private uint _nextStreamId = 1;
    private uint _lastSentStreamId;
    private int _active;
    private bool _goingAway;
    private bool _isClosed;
    private bool _outputBroken;
    private readonly Http2OutputFlusher _flusher;
    private Http2ErrorCode _abortCode;
    private string? _abortReason;
    private Task? _loop;

    // Stream objects kept for reuse (see Retire), guarded by _lock; _retiredCount is read without it by the frame loop.
    private const int MaxFreeStreams = 256;
    private readonly List<Http2ClientStream> _retiredStreams = [];
    private readonly Stack<Http2ClientStream> _freeStreams = new();
    private volatile int _retiredCount;
    private readonly List<Http2ClientStream> _recycling = []; // the frame loop's scratch list

    // Final response heads whose reader is woken at the end of the read they arrived in rather than at once (frame loop
    // only): a small response's DATA usually sits right behind its HEADERS, and when the reader (the upstream exchange,
    // then the forwarder) runs only after it, it takes head, body and end in one pass instead of one for the head and
    // another for the body. The stream's id guards against a stream object recycled meanwhile.
    private readonly List<(Http2ClientStream Stream, uint Id)> _deferredHeads = [];
    private bool _moreFramesBuffered;

    // The field block being received (HEADERS + CONTINUATIONs): its stream and what it is.
    private Http2ClientStream? _blockStream;
    private Http2FieldList? _blockFields;
    private bool _blockTrailers;
    private bool _blockEndStream;
    private bool _blockTooLarge;
    private Http2ErrorCode _blockStreamError;

    /// <summary>Creates the connection over a transport already connected to the server (nothing is sent until <see cref="StartAsync"/>).</summary>
    public Http2ClientConnection(IDuplexPipe transport, Http2ClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        _options = options ?? Http2ClientOptions.Default;
        _input = transport.Input;
        _output = transport.Output;
        _flusher = new Http2OutputFlusher(_output, _writeLock, this);
        _assembler = new Http2HeaderBlockAssembler(_options.MaxHeaderBlockSize);
        // Until the server ACKs our SETTINGS its encoder may use the default 4096-byte table.
        _decoder = new HpackDecoder(Math.Max(_options.HeaderTableSize, (int)Http2Constants.DefaultHeaderTableSize), _options.MaxHeaderListSize, _options.MaxHeaderListSize);
        _peerMaxConcurrentStreams = _options.InitialMaxConcurrentStreams;
    }

    bool IHttp2OutputOwner.OutputBroken
    {
        get => _outputBroken;
        set => _outputBroken = value;
    }

    /// <summary>Creates the connection over a <see cref="ConnectionContext"/>'s transport.</summary>
    public Http2ClientConnection(ConnectionContext connection, Http2ClientOptions? options = null)
        : this(connection?.Transport ?? throw new ArgumentNullException(nameof(connection)), options)
    {
    }

    /// <summary>Streams opened (by <see cref="TryOpenStream"/>) and not yet finished.</summary>
    public int ActiveStreams
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _active;
            }
        }
    }

    /// <summary>The server's SETTINGS_MAX_CONCURRENT_STREAMS (or <see cref="Http2ClientOptions.InitialMaxConcurrentStreams"/> before its SETTINGS).</summary>
    public int MaxConcurrentStreams => Volatile.Read(ref _peerMaxConcurrentStreams);

    /// <summary>True when <see cref="TryOpenStream"/> would succeed now.</summary>
    public bool CanOpenStream
    {
        get
        {
            using (_lock.EnterScope())
            {
                return CanOpenUnsynchronized();
            }
        }
    }

    /// <summary>The server sent GOAWAY, or we are closing: no new streams.</summary>
    public bool IsGoingAway => Volatile.Read(ref _goingAway) || Volatile.Read(ref _isClosed);

    /// <summary>Completes when the connection stops taking new streams (GOAWAY received, or closing): the pool's signal to open another.</summary>
    public Task GoingAway => _goingAwayTask.Task;

    /// <summary>Completes when the connection has ended (frame loop done, streams ended, output completed).</summary>
    public Task Closed => _closed.Task;

    /// <summary>
    /// True once the server's first SETTINGS frame (which must be its first frame, RFC 9113 §3.4) was processed; false
    /// when the connection ended before (not an HTTP/2 server, or it closed): see <see cref="CloseReason"/>.
    /// </summary>
    public Task<bool> PeerSettingsReceived => _peerSettings.Task;

    /// <summary>Why the connection ended (null while it runs).</summary>
    public string? CloseReason => Volatile.Read(ref _closeReason);

    /// <summary>Sends the preface, our SETTINGS and the connection WINDOW_UPDATE, then starts the frame loop (it runs until the connection ends).</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_loop is not null)
        {
            throw new InvalidOperationException("The connection was already started.");
        }

        Http2Setting[] settings =
        [
            new(Http2SettingsParameter.EnablePush, 0),
            new(Http2SettingsParameter.InitialWindowSize, (uint)_options.InitialStreamWindowSize),
            new(Http2SettingsParameter.MaxHeaderListSize, (uint)_options.MaxHeaderListSize),
            new(Http2SettingsParameter.HeaderTableSize, (uint)_options.HeaderTableSize),
        ];
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Http2FrameWriter.WriteClientPreface(_output);
            Http2FrameWriter.WriteSettings(_output, settings);
            uint increment;
            using (_lock.EnterScope())
            {
                increment = _connectionReceiveWindow.GrowTo(_options.InitialConnectionWindowSize);
            }

            if (increment > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, increment);
            }

            await FlushNowUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }

        StartKeepalive();
        _loop = RunAsync();
    }

    /// <summary>
    /// Reserves a stream slot: false when the server's MAX_CONCURRENT_STREAMS is reached, stream ids are exhausted,
    /// or the connection is going away or closed (the pool then uses another connection). The stream id is
    /// assigned when its HEADERS are written.
    /// </summary>
    public bool TryOpenStream(out Http2ClientStream stream)
    {
        using (_lock.EnterScope())
        {
            if (!CanOpenUnsynchronized())
            {
                stream = null!;
                return false;
            }

            _active++;
            if (_freeStreams.TryPop(out var reused))
            {
                stream = reused;
                return true;
            }
        }

        stream = new Http2ClientStream(this);
        return true;
    }

    /// <summary>
    /// A disposed stream object may carry a later stream: it waits in the retired list until the frame loop, which is
    /// the only other code that may still hold it (a frame being processed, a header block in progress), is between
    /// frames; there <see cref="RecycleRetired"/> makes it new and puts it in the free list.
    /// </summary>
    internal void Retire(Http2ClientStream stream)
    {
        using (_lock.EnterScope())
        {
            if (_isClosed || _retiredStreams.Count >= MaxFreeStreams)
            {
                return;
            }

            _retiredStreams.Add(stream);
            _retiredCount = _retiredStreams.Count;
        }
    }

    /// <summary>Between frames, on the frame loop: retired streams that nothing can reach any more become free.</summary>
    private void RecycleRetired()
    {
        var picked = _recycling;
        using (_lock.EnterScope())
        {
            for (var i = _retiredStreams.Count - 1; i >= 0; i--)
            {
                var stream = _retiredStreams[i];
                if (ReferenceEquals(stream, _blockStream) || !stream.Released)
                {
                    // Its header block is still arriving (or it is somehow still in the table): next time.
                    continue;
                }

                _retiredStreams.RemoveAt(i);
                picked.Add(stream);
            }

            _retiredCount = _retiredStreams.Count;
        }

        // Outside the connection's lock: the stream's own lock is never taken inside it.
        foreach (var stream in picked)
        {
            Recycle(stream);
        }

        picked.Clear();
    }

    private void Recycle(Http2ClientStream stream)
    {
        if (!stream.CanBeReused)
        {
            return;
        }

        stream.ResetForReuse();
        using (_lock.EnterScope())
        {
            if (!_isClosed && _freeStreams.Count < MaxFreeStreams)
            {
                _freeStreams.Push(stream);
            }
        }
    }

    /// <summary>Ends the connection: GOAWAY(NO_ERROR), every unfinished stream ends ConnectionLost, the output completes.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_loop is null)
        {
            await ShutdownAsync(Http2ErrorCode.NoError, null, sendGoAway: false).ConfigureAwait(false);
        }
        else
        {
            AbortConnection(Http2ErrorCode.NoError, "closed by the client");
            await _loop.ConfigureAwait(false);
        }

        _decoder.Dispose();
    }

    private bool CanOpenUnsynchronized() =>
        !_goingAway && !_isClosed && _loop is not null && _active < _peerMaxConcurrentStreams && _nextStreamId + ((uint)_active * 2) <= Http2Constants.StreamIdMask;

    /// <summary>Ends the connection from outside the frame loop: the loop wakes, sends GOAWAY with <paramref name="code"/> and closes.</summary>
    internal void AbortConnection(Http2ErrorCode code, string reason)
    {
        if (Interlocked.CompareExchange(ref _abortReason, reason, null) is null)
        {
            _abortCode = code;
            _input.CancelPendingRead();
        }
    }

    // ---- frame loop ---------------------------------------------------------------------------------

    private async Task RunAsync()
    {
        // Let StartAsync return before the first read completes inline.
        await Task.Yield();
        var code = Http2ErrorCode.NoError;
        string reason = "the server closed the connection";
        var sendGoAway = false;
        try
        {
            // Resumed per frame batch for the connection's life: it captures no execution context (this runs on a
            // pool thread after the yield, whose default context it would otherwise carry).
            Task frameLoop;
            using (SuppressedFlow.Begin())
            {
                frameLoop = FrameLoopAsync().AsTask();
            }

            await frameLoop.ConfigureAwait(false);
        }
        catch (Http2ConnectionException e)
        {
            code = e.ErrorCode;
            reason = e.Reason;
            sendGoAway = true;
        }
        catch (HpackDecodingException e)
        {
            code = Http2ErrorCode.CompressionError;
            reason = e.Message;
            sendGoAway = true;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionAbortedException or InvalidOperationException or ObjectDisposedException)
        {
            code = Http2ErrorCode.InternalError;
            reason = "the connection failed: " + e.Message;
        }
        finally
        {
            await ShutdownAsync(code, reason, sendGoAway).ConfigureAwait(false);
        }
    }

    private async ValueTask FrameLoopAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            if (_keepaliveTimer is not null && !result.IsCanceled)
            {
                // Liveness for the keepalive: one timestamp per read (any bytes count, as any frame does in Envoy).
                Volatile.Write(ref _lastReceived, _options.TimeProvider.GetTimestamp());
            }

            try
            {
                while (true)
                {
                    if (_retiredCount > 0)
                    {
                        RecycleRetired();
                    }

                    ReadOnlySequence<byte> payload;
                    try
                    {
                        if (!Http2FrameReader.TryReadFrame(ref buffer, _frame, Http2Constants.DefaultMaxFrameSize, out payload))
                        {
                            break;
                        }
                    }
                    catch (Http2StreamException e)
                    {
                        // The frame was consumed; only its stream fails.
                        ResetStreamById(e.StreamId, e.ErrorCode, e.Reason);
                        continue;
                    }

                    // A whole frame header behind this frame: a head completed now may wait for what follows (see _deferredHeads).
                    _moreFramesBuffered = buffer.Length >= Http2Constants.FrameHeaderSize;
                    try
                    {
                        var processing = ProcessFrameAsync(payload);
                        if (!processing.IsCompleted && _deferredHeads.Count > 0)
                        {
                            // The loop waits here (window, output): the deferred readers need not.
                            WakeDeferredHeads();
                        }

                        await processing.ConfigureAwait(false);
                    }
                    catch (Http2StreamException e)
                    {
                        ResetStreamById(e.StreamId, e.ErrorCode, e.Reason);
                    }
                }
            }
            finally
            {
                _moreFramesBuffered = false;
                _input.AdvanceTo(buffer.Start, buffer.End);
                if (_deferredHeads.Count > 0)
                {
                    WakeDeferredHeads();
                }
            }

            if (result.IsCanceled && Volatile.Read(ref _abortReason) is { } reason)
            {
                throw new Http2ConnectionException(_abortCode, reason);
            }

            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private ValueTask ProcessFrameAsync(ReadOnlySequence<byte> payload)
    {
        var frame = _frame;
        if (!_firstFrameSeen)
        {
            // RFC 9113 §3.4: the server's preface is a SETTINGS frame; anything else is not an HTTP/2 server.
            if (frame.Type != Http2FrameType.Settings || frame.IsAck)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"the server's first frame was {frame.Type}, not SETTINGS");
            }

            _firstFrameSeen = true;
        }

        var endsBlock = _assembler.OnFrame(frame, payload.Length);
        switch (frame.Type)
        {
            case Http2FrameType.Headers:
                OnHeaders(payload, endsBlock);
                return ValueTask.CompletedTask;
            case Http2FrameType.Continuation:
                OnHeaderFragment(payload, endsBlock);
                return ValueTask.CompletedTask;
            case Http2FrameType.Data:
                return OnDataAsync(payload);
            case Http2FrameType.Settings:
                return OnSettingsAsync(payload);
            case Http2FrameType.Ping:
                if (frame.IsAck)
                {
                    OnPingAck(frame.PingData);
                    return ValueTask.CompletedTask;
                }

                return WritePingAckAsync(frame.PingData);
            case Http2FrameType.WindowUpdate:
                OnWindowUpdate();
                return ValueTask.CompletedTask;
            case Http2FrameType.RstStream:
                OnRstStream();
                return ValueTask.CompletedTask;
            case Http2FrameType.GoAway:
                OnGoAway();
                return ValueTask.CompletedTask;
            case Http2FrameType.PushPromise:
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, "PUSH_PROMISE received although SETTINGS_ENABLE_PUSH is 0");
            default:
                // PRIORITY (deprecated, RFC 9113 §5.3.2) and unknown frame types are ignored.
                return ValueTask.CompletedTask;
        }
    }

    private Http2ClientStream? FindStream(uint id, string frameName)
    {
        if ((id & 1) == 0)
        {
            throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"{frameName} on server-initiated stream {id} (push is disabled)");
        }

        using (_lock.EnterScope())
        {
            if (id > _lastSentStreamId)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"{frameName} on idle stream {id}");
            }

            return _streams.GetValueOrDefault(id);
        }
    }

    private void OnHeaders(ReadOnlySequence<byte> payload, bool endHeaders)
    {
        var stream = FindStream(_frame.StreamId, "HEADERS");
        _blockStream = stream;
        _blockFields = null;
        _blockEndStream = _frame.EndStream;
        _blockTooLarge = false;
        _blockStreamError = Http2ErrorCode.NoError;
        if (stream is not null)
        {
            bool remoteClosed, finalHead;
            using (_lock.EnterScope())
            {
                remoteClosed = stream.RemoteClosed;
                finalHead = stream.FinalHeadReceived;
            }

            if (remoteClosed)
            {
                _blockStreamError = Http2ErrorCode.StreamClosed;
            }
            else if (finalHead && !_blockEndStream)
            {
                // After the final head only trailers may come, and they end the stream (RFC 9113 §8.1).
                _blockStreamError = Http2ErrorCode.ProtocolError;
            }
            else
            {
                _blockTrailers = finalHead;
                _blockFields = stream.TakeFields();
                _collector.Begin(_blockFields, _blockTrailers);
            }
        }

        OnHeaderFragment(payload, endHeaders);
    }

    private void OnHeaderFragment(ReadOnlySequence<byte> payload, bool endHeaders)
    {
        try
        {
            if (_blockFields is null)
            {
                var sink = new Http2DiscardSink();
                _decoder.Decode(payload, endHeaders, ref sink);
            }
            else
            {
                var sink = new Http2ResponseSink(_collector);
                _decoder.Decode(payload, endHeaders, ref sink);
            }
        }
        catch (HpackHeaderListTooLargeException)
        {
            // Thrown at the block's end after decoding all of it (the table is in step): only this stream fails.
            _blockTooLarge = true;
        }

        if (endHeaders)
        {
            OnHeaderBlockComplete();
        }
    }

    private void OnHeaderBlockComplete()
    {
        var stream = _blockStream;
        var fields = _blockFields;
        _blockStream = null;
        _blockFields = null;
        if (stream is null)
        {
            return;
        }

        if (_blockStreamError != Http2ErrorCode.NoError)
        {
            fields?.Dispose();
            ResetStream(stream, _blockStreamError, _blockStreamError == Http2ErrorCode.StreamClosed ? "HEADERS after the server ended the stream" : "a second head without END_STREAM");
            return;
        }

        if (fields is null)
        {
            return;
        }

        var error = _blockTooLarge ? Http2FieldError.TooLarge : _collector.Complete();
        var status = _collector.Status;
        if (error == Http2FieldError.None && !_blockTrailers && status is >= 100 and < 200)
        {
            // 101 does not exist in HTTP/2 (§8.6); an interim head cannot end the stream (§8.1).
            if (status == 101 || _blockEndStream)
            {
                error = Http2FieldError.InvalidStatus;
            }
        }

        if (error != Http2FieldError.None)
        {
            fields.Dispose();
            ResetStream(stream, Http2ErrorCode.ProtocolError, "malformed response: " + Http2FieldCheck.Describe(error));
            return;
        }

        if (_blockTrailers)
        {
            if (stream.ExpectedLength >= 0 && stream.ReceivedLength != stream.ExpectedLength)
            {
                fields.Dispose();
                ResetStream(stream, Http2ErrorCode.ProtocolError, "malformed response: DATA length differs from content-length");
                return;
            }

            stream.Trailers = fields;
            OnRemoteEnd(stream);
            return;
        }

        var interim = status < 200;
        using (_lock.EnterScope())
        {
            if (interim)
            {
                stream.InterimCount++;
            }
            else
            {
                stream.FinalHeadReceived = true;
                // RFC 9113 §8.1.1: DATA must add up to content-length, except where no body is sent (HEAD, 204, 304).
                stream.ExpectedLength = !stream.IsHeadRequest && status is not (204 or 304) && fields.TryGetValue("content-length"u8, out var cl) && TryParseLength(cl, out var length) ? length : -1;
            }
        }

        if (interim && stream.InterimCount > _options.MaxInterimResponses)
        {
            fields.Dispose();
            ResetStream(stream, Http2ErrorCode.ProtocolError, "too many interim responses");
            return;
        }

        if (_blockEndStream && !interim && stream.ExpectedLength > 0)
        {
            fields.Dispose();
            ResetStream(stream, Http2ErrorCode.ProtocolError, "malformed response: content-length without DATA");
            return;
        }

        // With END_STREAM the reader wakes at the end (End), so it never sees a complete response on a stream still open.
        // A final head with more frames read behind it wakes its reader after them (or at its END_STREAM, whichever first).
        var defer = !_blockEndStream && !interim && _moreFramesBuffered;
        stream.EnqueueHead(stream.CreateHead(status, fields), wake: !_blockEndStream && !defer);
        if (defer)
        {
            _deferredHeads.Add((stream, stream.Id));
        }

        if (_blockEndStream)
        {
            OnRemoteEnd(stream);
        }
    }

    /// <summary>Wakes the readers of the heads deferred in this read (frame loop only; no lock held: readers run inline).</summary>
    private void WakeDeferredHeads()
    {
        // Index loop: a reader run inline never adds here (only the frame loop does), but the list is cleared after.
        var deferred = _deferredHeads;
        for (var i = 0; i < deferred.Count; i++)
        {
            var (stream, id) = deferred[i];
            if (stream.Id == id)
            {
                stream.WakeQueuedHead();
            }
        }

        deferred.Clear();
    }

    private static bool TryParseLength(ReadOnlySpan<byte> value, out long length) =>
        System.Buffers.Text.Utf8Parser.TryParse(value, out length, out var consumed) && consumed == value.Length && length >= 0;

    /// <summary>END_STREAM from the server: the response is complete.</summary>
    private void OnRemoteEnd(Http2ClientStream stream)
    {
        using (_lock.EnterScope())
        {
            stream.RemoteClosed = true;
            if (stream.LocalClosed)
            {
                ReleaseUnsynchronized(stream);
            }
        }

        stream.End(new Http2StreamEnd(Http2StreamEndKind.Completed, Http2ErrorCode.NoError));
    }

    private async ValueTask OnDataAsync(ReadOnlySequence<byte> payload)
    {
        var id = _frame.StreamId;
        var length = _frame.PayloadLength;
        using (_lock.EnterScope())
        {
            _connectionReceiveWindow.OnData(length, 0);
        }

        var stream = FindStream(id, "DATA");
        if (stream is null)
        {
            // A stream that ended here: the data is dropped and the connection window credited (RFC 9113 §6.9).
            await CreditAsync(null, length).ConfigureAwait(false);
            return;
        }

        string? error = null;
        var code = Http2ErrorCode.ProtocolError;
        using (_lock.EnterScope())
        {
            if (stream.RemoteClosed)
            {
                error = "DATA after the server ended the stream";
                code = Http2ErrorCode.StreamClosed;
            }
            else if (!stream.FinalHeadReceived)
            {
                error = "DATA before the final response head";
            }
            else if (length > stream.ReceiveWindow.Available)
            {
                error = "DATA beyond the stream's flow-control window";
                code = Http2ErrorCode.FlowControlError;
            }
            else if (stream.ExpectedLength >= 0 && (stream.ReceivedLength + payload.Length > stream.ExpectedLength || (_frame.EndStream && stream.ReceivedLength + payload.Length != stream.ExpectedLength)))
            {
                error = "DATA length differs from content-length";
            }
            else
            {
                stream.ReceiveWindow.OnData(length, id);
                stream.ReceivedLength += payload.Length;
            }
        }

        if (error is not null)
        {
            await CreditAsync(null, length).ConfigureAwait(false);
            throw new Http2StreamException(id, code, error);
        }

        // Padding counts against the windows but never reaches the consumer: credit it now.
        var immediate = length - (int)payload.Length;
        var endStream = _frame.EndStream;
        // With END_STREAM the bytes are flushed by the end itself: the consumer (run inline) sees body and end at once.
        if (!payload.IsEmpty && !stream.WriteBody(payload, flush: !endStream))
        {
            // The consumer stopped reading: nothing will consume these bytes.
            immediate += (int)payload.Length;
        }

        if (endStream)
        {
            // The stream is not touched after this (its consumer may have finished and disposed it): connection credit only.
            OnRemoteEnd(stream);
            if (immediate > 0)
            {
                await CreditAsync(null, immediate).ConfigureAwait(false);
            }

            return;
        }

        if (immediate > 0)
        {
            await CreditAsync(stream, immediate).ConfigureAwait(false);
        }
    }

    private async ValueTask OnSettingsAsync(ReadOnlySequence<byte> payload)
    {
        if (_frame.IsAck)
        {
            if (!_settingsAcked)
            {
                // Our HEADER_TABLE_SIZE holds from the ACK on (RFC 9113 §6.5.3).
                _settingsAcked = true;
                _decoder.SetMaxHeaderTableSize(_options.HeaderTableSize);
            }

            return;
        }

        foreach (var setting in new Http2SettingsEnumerator(payload))
        {
            switch (setting.Parameter)
            {
                case Http2SettingsParameter.HeaderTableSize:
                    _pendingTableSize = (int)Math.Min(setting.Value, int.MaxValue);
                    break;
                case Http2SettingsParameter.MaxConcurrentStreams:
                    Volatile.Write(ref _peerMaxConcurrentStreams, (int)Math.Min(setting.Value, int.MaxValue));
                    break;
                case Http2SettingsParameter.InitialWindowSize:
                    ApplyInitialWindow((int)setting.Value);
                    break;
                case Http2SettingsParameter.MaxFrameSize:
                    Volatile.Write(ref _peerMaxFrameSize, setting.Value);
                    break;
            }
        }

        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_pendingTableSize >= 0)
            {
                // Under the write lock: the encoder is only touched there, and the next block announces the size.
                _encoder.SetMaxDynamicTableSize(_pendingTableSize);
                _pendingTableSize = -1;
            }

            if (!_isClosed)
            {
                Http2FrameWriter.WriteSettingsAck(_output);
                await FlushUnlockedAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }

        _peerSettings.TrySetResult(true);
    }

    private void ApplyInitialWindow(int value)
    {
        using (_lock.EnterScope())
        {
            var old = _peerInitialWindow;
            _peerInitialWindow = value;
            foreach (var stream in _streams.Values)
            {
                // RFC 9113 §6.9.2: the change moves every stream's send window, possibly below zero.
                stream.SendWindow.ApplyInitialWindowSizeChange(old, value);
                stream.SignalWindow();
            }
        }
    }

    private void OnWindowUpdate()
    {
        var id = _frame.StreamId;
        var increment = _frame.WindowIncrement;
        if (id == 0)
        {
            using (_lock.EnterScope())
            {
                _connectionSendWindow.Credit(increment, 0);
                foreach (var s in _streams.Values)
                {
                    s.SignalWindow();
                }
            }

            return;
        }

        var stream = FindStream(id, "WINDOW_UPDATE");
        if (stream is null)
        {
            return;
        }

        using (_lock.EnterScope())
        {
            stream.SendWindow.Credit(increment, id);
        }

        stream.SignalWindow();
    }

    private void OnRstStream()
    {
        var code = _frame.ErrorCode;
        var stream = FindStream(_frame.StreamId, "RST_STREAM");
        if (stream is null)
        {
            return;
        }

        using (_lock.EnterScope())
        {
            ReleaseUnsynchronized(stream);
        }

        // REFUSED_STREAM: the server did no processing (RFC 9113 §8.7), the request may be retried elsewhere.
        var kind = code == Http2ErrorCode.RefusedStream ? Http2StreamEndKind.Refused : Http2StreamEndKind.ResetByPeer;
        stream.End(new Http2StreamEnd(kind, code, "RST_STREAM from the server"));
    }

    private void OnGoAway()
    {
        var last = _frame.LastStreamId;
        var code = _frame.ErrorCode;
        List<Http2ClientStream>? refused = null;
        using (_lock.EnterScope())
        {
            _goingAway = true;
            _goingAwayTask.TrySetResult();
            foreach (var stream in _streams.Values)
            {
                if (stream.Id > last)
                {
                    (refused ??= []).Add(stream);
                }
            }

            if (refused is not null)
            {
                foreach (var stream in refused)
                {
                    ReleaseUnsynchronized(stream);
                }
            }

            CloseIfDrainedUnsynchronized();
        }

        if (refused is not null)
        {
            foreach (var stream in refused)
            {
                // Above the last stream id the server will process: not processed, retryable (RFC 9113 §6.8).
                stream.End(new Http2StreamEnd(Http2StreamEndKind.Refused, code, "GOAWAY from the server"));
            }
        }
    }

    // ---- credit (response body consumed) -------------------------------------------------------------

    internal void OnBodyConsumed(Http2ClientStream stream, long bytes) => _ = CreditInBackgroundAsync(stream, (int)bytes);

    private async Task CreditInBackgroundAsync(Http2ClientStream stream, int bytes)
    {
        try
        {
            await CreditAsync(stream, bytes).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or ConnectionAbortedException or OperationCanceledException)
        {
            // The connection is ending; credit no longer matters.
        }
    }

    /// <summary>Counts <paramref name="bytes"/> as consumed on the connection (and the stream) window; sends WINDOW_UPDATE once half a window is due.</summary>
    private async ValueTask CreditAsync(Http2ClientStream? stream, int bytes)
    {
        uint connectionIncrement;
        uint streamIncrement = 0;
        uint streamId = 0;
        using (_lock.EnterScope())
        {
            if (_isClosed)
            {
                return;
            }

            _connectionReceiveWindow.OnConsumed(bytes);
            _connectionReceiveWindow.TryTakeUpdate(out connectionIncrement);
            if (stream is not null && !stream.RemoteClosed && !stream.Released)
            {
                // Per stream too, but only while the server may still send on it.
                stream.ReceiveWindow.OnConsumed(bytes);
                if (stream.ReceiveWindow.TryTakeUpdate(out streamIncrement))
                {
                    streamId = stream.Id;
                }
            }
        }

        if (connectionIncrement == 0 && streamIncrement == 0)
        {
            return;
        }

        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_isClosed || _outputBroken)
            {
                return;
            }

            if (connectionIncrement > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, connectionIncrement);
            }

            if (streamIncrement > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, streamId, streamIncrement);
            }

            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    // ---- writing ------------------------------------------------------------------------------------

    // Pooled builder: a write that waits for the lock or the flush would otherwise allocate its state machine box per call.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<bool> WriteHeadersAsync(Http2ClientStream stream, Http2FieldList fields, bool endStream, bool trailers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fields);
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        var refused = false;
        try
        {
            uint id;
            using (_lock.EnterScope())
            {
                if (stream.Released || stream.LocalClosed || _outputBroken)
                {
                    return false;
                }

                if (trailers)
                {
                    if (!stream.HeadersSent)
                    {
                        throw new InvalidOperationException("Trailers before the request head.");
                    }
                }
                else
                {
                    if (stream.HeadersSent)
                    {
                        throw new InvalidOperationException("The request head was already sent.");
                    }

                    if (_goingAway || _isClosed || _nextStreamId > Http2Constants.StreamIdMask)
                    {
                        // Never sent: the server cannot have processed it.
                        ReleaseUnsynchronized(stream);
                        refused = true;
                        return false;
                    }

                    // Ids are taken in the order HEADERS leave, so they grow on the wire (RFC 9113 §5.1.1).
                    stream.Id = _nextStreamId;
                    _nextStreamId += 2;
                    _lastSentStreamId = stream.Id;
                    stream.HeadersSent = true;
                    stream.IsHeadRequest = fields.TryGetValue(":method"u8, out var method) && method.SequenceEqual("HEAD"u8);
                    stream.SendWindow = new Http2FlowWindow(_peerInitialWindow);
                    stream.ReceiveWindow = new Http2ReceiveWindow(_options.InitialStreamWindowSize);
                    _streams.Add(stream.Id, stream);
                }

                id = stream.Id;
                if (endStream)
                {
                    stream.LocalClosed = true;
                }
            }

            var block = _block;
            block.ResetWrittenCount();
            EncodeFieldBlock(_encoder, block, fields, includePseudo: !trailers);
            Http2FrameWriter.WriteHeaders(_output, id, block.WrittenSpan, endStream, Volatile.Read(ref _peerMaxFrameSize));
            var flushed = await FlushUnlockedAsync().ConfigureAwait(false);
            if (endStream)
            {
                ReleaseIfBothClosed(stream);
            }

            return flushed;
        }
        finally
        {
            _writeLock.Release();
            if (refused)
            {
                stream.End(new Http2StreamEnd(Http2StreamEndKind.Refused, Http2ErrorCode.RefusedStream, "the connection is going away"));
            }
        }
    }

    /// <summary>
    /// HPACK-encodes <paramref name="fields"/> as one field block: pseudo-headers first (RFC 9113 §8.3), then the
    /// regular fields, each group in the given order. Names are lowercased by the encoder. No allocation once the
    /// block buffer has grown.
    /// </summary>
    internal static void EncodeFieldBlock(HpackEncoder encoder, IBufferWriter<byte> block, Http2FieldList fields, bool includePseudo)
    {
        encoder.BeginHeaderBlock(block);
        var count = fields.Count;
        if (includePseudo)
        {
            for (var i = 0; i < count; i++)
            {
                var name = fields.GetName(i);
                if (!name.IsEmpty && name[0] == (byte)':')
                {
                    encoder.EncodeHeader(block, name, fields.GetValue(i));
                }
            }
        }

        for (var i = 0; i < count; i++)
        {
            var name = fields.GetName(i);
            if (name.IsEmpty || name[0] != (byte)':')
            {
                encoder.EncodeHeader(block, name, fields.GetValue(i));
            }
        }
    }

    // Pooled builder: called once per DATA frame sent; a wait would otherwise allocate its state machine box.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<bool> WriteDataAsync(Http2ClientStream stream, ReadOnlySequence<byte> data, bool endStream, CancellationToken cancellationToken)
    {
        if (data.IsEmpty && !endStream)
        {
            return true;
        }

        while (true)
        {
            int take;
            Task? wait = null;
            using (_lock.EnterScope())
            {
                if (stream.Released || stream.LocalClosed || !stream.HeadersSent || _isClosed || _outputBroken)
                {
                    return false;
                }

                var window = Math.Min(stream.SendWindow.Available, _connectionSendWindow.Available);
                take = (int)Math.Min(Math.Min(data.Length, window), Volatile.Read(ref _peerMaxFrameSize));
                if (take <= 0 && !data.IsEmpty)
                {
                    wait = stream.WaitForWindowAsync();
                }
                else
                {
                    take = Math.Max(take, 0);
                    stream.SendWindow.Take(take);
                    _connectionSendWindow.Take(take);
                }
            }

            if (wait is not null)
            {
                try
                {
                    await wait.WaitAsync(_options.SendStallTimeout, _options.TimeProvider, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Zero-window stall: the server stopped reading this request.
                    ResetStream(stream, Http2ErrorCode.Cancel, "the request body waited too long for the server's flow-control window");
                    return false;
                }

                continue;
            }

            var last = take == data.Length;
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                using (_lock.EnterScope())
                {
                    if (stream.Released || _isClosed)
                    {
                        return false;
                    }

                    if (endStream && last)
                    {
                        stream.LocalClosed = true;
                    }
                }

                Http2FrameWriter.WriteData(_output, stream.Id, data.Slice(0, take), endStream && last);
                if (!await FlushUnlockedAsync().ConfigureAwait(false))
                {
                    return false;
                }
            }
            finally
            {
                _writeLock.Release();
            }

            if (last)
            {
                if (endStream)
                {
                    ReleaseIfBothClosed(stream);
                }

                return true;
            }

            data = data.Slice(take);
        }
    }

    private async ValueTask WritePingAckAsync(ulong data)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_isClosed)
            {
                Http2FrameWriter.WritePing(_output, data, ack: true);
                await FlushUnlockedAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Flushes the output (at the end of the event loop's batch when on one: <see cref="Http2OutputFlusher"/>); false when the transport is gone. Call under the write lock.</summary>
    private ValueTask<bool> FlushUnlockedAsync() => _flusher.FlushAsync();

    /// <summary>Flushes at once (the caller holds the write lock), after any flush still pending.</summary>
    private ValueTask<bool> FlushNowUnlockedAsync() => _flusher.FlushNowAsync();

    // ---- stream ends --------------------------------------------------------------------------------

    private void ResetStreamById(uint id, Http2ErrorCode code, string reason)
    {
        Http2ClientStream? stream;
        using (_lock.EnterScope())
        {
            stream = _streams.GetValueOrDefault(id);
        }

        if (stream is not null)
        {
            ResetStream(stream, code, reason);
        }
        else if (id != 0)
        {
            _ = WriteRstInBackgroundAsync(id, code);
        }
    }

    /// <summary>Ends <paramref name="stream"/> on our side: RST_STREAM if it is open on the wire, then <see cref="Http2StreamEndKind.ResetLocally"/>.</summary>
    internal void ResetStream(Http2ClientStream stream, Http2ErrorCode code, string reason)
    {
        bool sendRst;
        using (_lock.EnterScope())
        {
            sendRst = stream.HeadersSent && !stream.Released && !_isClosed;
            ReleaseUnsynchronized(stream);
        }

        stream.End(new Http2StreamEnd(Http2StreamEndKind.ResetLocally, code, reason));
        if (sendRst)
        {
            _ = WriteRstInBackgroundAsync(stream.Id, code);
        }
    }

    private async Task WriteRstInBackgroundAsync(uint id, Http2ErrorCode code)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_isClosed && !_outputBroken)
            {
                Http2FrameWriter.WriteRstStream(_output, id, code);
                await FlushUnlockedAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void ReleaseIfBothClosed(Http2ClientStream stream)
    {
        using (_lock.EnterScope())
        {
            if (stream.LocalClosed && stream.RemoteClosed)
            {
                ReleaseUnsynchronized(stream);
            }
        }
    }

    /// <summary>The stream no longer counts against MAX_CONCURRENT_STREAMS and leaves the table (later frames for it are dropped).</summary>
    private void ReleaseUnsynchronized(Http2ClientStream stream)
    {
        if (stream.Released)
        {
            return;
        }

        stream.Released = true;
        _active--;
        if (stream.Id != 0)
        {
            _streams.Remove(stream.Id);
        }

        CloseIfDrainedUnsynchronized();
    }

    /// <summary>After the server's GOAWAY, the last stream to end closes the connection (GOAWAY NO_ERROR, then FIN).</summary>
    private void CloseIfDrainedUnsynchronized()
    {
        if (_goingAway && _active == 0 && !_isClosed && Interlocked.CompareExchange(ref _abortReason, "the server sent GOAWAY and no streams remain", null) is null)
        {
            // Under _lock: waking the frame loop here could run it (and the streams' consumers) inline, so it is queued.
            _abortCode = Http2ErrorCode.NoError;
            ThreadPool.UnsafeQueueUserWorkItem(static input => input.CancelPendingRead(), _input, preferLocal: false);
        }
    }

    private async ValueTask ShutdownAsync(Http2ErrorCode code, string? reason, bool sendGoAway)
    {
        List<Http2ClientStream> open;
        Interlocked.CompareExchange(ref _closeReason, reason ?? "closed", null);
        _peerSettings.TrySetResult(false);
        using (_lock.EnterScope())
        {
            _isClosed = true;
            _goingAwayTask.TrySetResult();
            open = [.. _streams.Values];
            foreach (var stream in open)
            {
                ReleaseUnsynchronized(stream);
            }
        }

        foreach (var stream in open)
        {
            stream.End(new Http2StreamEnd(Http2StreamEndKind.ConnectionLost, code, reason));
        }

        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (sendGoAway && !_outputBroken)
            {
                // We accept no server-initiated streams, so the last processed stream id is 0.
                Http2FrameWriter.WriteGoAway(_output, 0, code, reason is null ? default : System.Text.Encoding.UTF8.GetBytes(reason));
                await FlushNowUnlockedAsync().ConfigureAwait(false);
            }

            _outputBroken = true;
            await _output.CompleteAsync().ConfigureAwait(false);
            await _input.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ConnectionAbortedException or ObjectDisposedException)
        {
        }
        finally
        {
            _writeLock.Release();
        }

        StopKeepalive();
        _closed.TrySetResult();
    }
}

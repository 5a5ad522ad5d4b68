using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Transport;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// One HTTP/2 client connection (h2c with prior knowledge): the frame loop, the stream table, both directions of
/// flow control and the single writer of the connection's output. Each request stream is translated to HTTP/1.1
/// and handed to a <see cref="Http2Lane"/>, on which the HTTP/1.1 forwarder does routing, balancing, pooling and
/// error answers; its response comes back as HEADERS/DATA/trailers.
/// <code>
/// client ─► preface ─► SETTINGS (ours) + connection WINDOW_UPDATE
///           frame loop: SETTINGS (apply, ACK) · PING (ACK) · WINDOW_UPDATE (credit, wake pumps) · RST_STREAM (abort lane)
///                       HEADERS [+CONTINUATION] ─► HPACK ─► Http2RequestHeadBuilder ─► lane (HTTP/1.1 head)
///                       DATA ─► windows checked ─► lane (raw under content-length, else chunked) ─► credit as consumed
/// lane response ─► stream pump: head ─► HEADERS · body ─► DATA within windows · chunked trailers ─► HEADERS END_STREAM
/// </code>
/// Connection errors end with GOAWAY and the RFC 9113 code; stream errors with RST_STREAM.
/// </summary>
internal sealed partial class Http2ServerSession : IDisposable, IHttp2OutputOwner
{
    private readonly Http2Server _server;
    private readonly Http2ServerOptions _options;
    private readonly ConnectionContext _connection;
    private readonly Http1Routing _routing;
    private readonly CancellationToken _cancellationToken;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly Http2Frame _frame = new();
    private readonly HpackDecoder _decoder;
    private readonly HpackEncoder _encoder = new();
    private readonly Http2HeaderBlockAssembler _assembler;
    private readonly Http2RequestHeadBuilder _builder;
    private readonly Http2TrailerLines _trailers = new();
    private readonly Dictionary<uint, Http2ServerStream> _streams = [];
    // Objects of ended streams that nothing holds any more (Holds == 0), reused by new streams; guarded by _lock.
    private readonly Stack<Http2ServerStream> _freeStreams = new();
    // Response pumps running (guarded by _lock); the shutdown waits for them through _pumpsDone.
    private int _activePumps;
    private TaskCompletionSource? _pumpsDone;
    private readonly Stack<Http2Lane> _idleLanes = new();
    private readonly List<Http2Lane> _lanes = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SpinLatch _lock = new();
    private readonly ArrayBufferWriter<byte> _block = new(256);
    private readonly Action<Http2Lane, long> _onConsumed;

    /// <summary>At most this many ended stream objects are kept per connection for reuse (the streams open at once, usually).</summary>
    private const int MaxFreeStreams = 128;

    /// <summary>Request body bytes taken and dropped after an early complete response before the stream is reset.</summary>
    private const int DrainLimit = 1024 * 1024;

    /// <summary>How long, and how many bytes, the connection keeps reading after a GOAWAY for an error (see <see cref="LingerAsync"/>).</summary>
    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);

    private const long LingerBytes = 1024 * 1024;

    private readonly TimeProvider _time;
    private FloodCounter _resets;
    private FloodCounter _controlFrames;
    private int _oversizedLists;
    private Http2ErrorCode _abortCode;
    private string? _abortReason;
    private uint _lastStreamId;
    private long _connectionSendWindow = Http2Constants.DefaultInitialWindowSize;
    private long _connectionReceiveWindow = Http2Constants.DefaultInitialWindowSize;
    private long _connectionPendingCredit;
    private int _peerInitialWindow = Http2Constants.DefaultInitialWindowSize;
    private uint _peerMaxFrameSize = Http2Constants.DefaultMaxFrameSize;
    private Http2ServerStream? _blockStream;
    private bool _blockIsTrailers;
    private bool _blockDiscard;
    private bool _outputBroken;
    private readonly Http2OutputFlusher _flusher;

    public Http2ServerSession(Http2Server server, ConnectionContext connection, Http1Routing routing, CancellationToken cancellationToken)
    {
        _server = server;
        _options = server.Options;
        _connection = connection;
        _routing = routing;
        _cancellationToken = cancellationToken;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
        _flusher = new Http2OutputFlusher(_output, _writeLock, this);
        _decoder = new HpackDecoder(_options.HeaderTableSize, _options.MaxHeaderListSize, _options.MaxHeaderListSize);
        _assembler = new Http2HeaderBlockAssembler(_options.MaxHeaderBlockSize);
        _builder = new Http2RequestHeadBuilder(_server.Forwarder.Options.Parser.MaxStartLineBytes + _server.Forwarder.Options.Parser.MaxHeaderBytes);
        _onConsumed = OnLaneConsumed;
        _time = server.Forwarder.Options.TimeProvider;
    }

    bool IHttp2OutputOwner.OutputBroken
    {
        get => _outputBroken;
        set => _outputBroken = value;
    }

    public async Task RunAsync()
    {
        var code = Http2ErrorCode.NoError;
        string? reason = null;
        try
        {
            if (!await ReadPrefaceAsync().ConfigureAwait(false))
            {
                code = Http2ErrorCode.ProtocolError;
                reason = "the connection did not start with the HTTP/2 client preface";
                return;
            }

            await WriteInitialSettingsAsync().ConfigureAwait(false);
            RegisterDrain();
            StartIdleTimer();
            await FrameLoopAsync().ConfigureAwait(false);
            if (_idleClosed)
            {
                reason = IdleReason();
            }
        }
        catch (Http2ConnectionException e)
        {
            code = e.ErrorCode;
            reason = e.Reason;
        }
        catch (HpackDecodingException e)
        {
            code = Http2ErrorCode.CompressionError;
            reason = e.Message;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionAbortedException or InvalidOperationException)
        {
            // The client went away or the proxy is stopping.
        }
        finally
        {
            await ShutdownAsync(code, reason).ConfigureAwait(false);
        }
    }

    // ---- reading ------------------------------------------------------------------------------------

    private async ValueTask<bool> ReadPrefaceAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync(_cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var preface = Http2Constants.ClientPreface;
            if (buffer.Length >= preface.Length)
            {
                var ok = buffer.Slice(0, preface.Length).IsSingleSegment
                    ? buffer.FirstSpan[..preface.Length].SequenceEqual(preface)
                    : buffer.Slice(0, preface.Length).ToArray().AsSpan().SequenceEqual(preface);
                // Examined only up to the preface: frames behind it in this read are parsed without waiting for more.
                _input.AdvanceTo(buffer.GetPosition(ok ? preface.Length : 0));
                return ok;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return false;
            }
        }
    }

    private async ValueTask FrameLoopAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync(_cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            try
            {
                while (true)
                {
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
                        await ResetStreamByIdAsync(e.StreamId, e.ErrorCode).ConfigureAwait(false);
                        continue;
                    }

                    try
                    {
                        await ProcessFrameAsync(payload).ConfigureAwait(false);
                    }
                    catch (Http2StreamException e)
                    {
                        await ResetStreamByIdAsync(e.StreamId, e.ErrorCode).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                WatchHeaderBlock(in buffer);
                _input.AdvanceTo(buffer.Start, buffer.End);
            }

            if (result.IsCanceled && Volatile.Read(ref _abortReason) is { } reason)
            {
                throw new Http2ConnectionException(_abortCode, reason);
            }

            if (result.IsCompleted)
            {
                return;
            }

            // Graceful drain (Http2ServerSession.Drain.cs): its wake-ups cancel the read too.
            if (Volatile.Read(ref _drainState) != DrainNone)
            {
                if (await DrainStepAsync().ConfigureAwait(false))
                {
                    return;
                }

                continue;
            }

            if (result.IsCanceled && Volatile.Read(ref _idleExpired) != 0)
            {
                // The idle timer (Http2ServerSession.IdleTimeout.cs): end unless a stream came in meanwhile.
                if (IdleTimedOut())
                {
                    _idleClosed = true;
                    return;
                }

                continue;
            }

            if (result.IsCanceled)
            {
                return;
            }
        }
    }

    /// <summary>Ends the connection from outside the frame loop (a response pump): the loop wakes and sends GOAWAY.</summary>
    internal void AbortConnection(Http2ErrorCode code, string reason)
    {
        _abortCode = code;
        if (Interlocked.CompareExchange(ref _abortReason, reason, null) is null)
        {
            _input.CancelPendingRead();
        }
    }

    /// <summary>Counts one event in a flood window; true when the limit is passed.</summary>
    private bool Flooded(ref FloodCounter counter, int limit)
    {
        var now = _time.GetTimestamp();
        if (counter.Count == 0 || _time.GetElapsedTime(counter.WindowStart, now) > _options.FloodWindow)
        {
            counter.WindowStart = now;
            counter.Count = 0;
        }

        return ++counter.Count > limit;
    }

    private struct FloodCounter
    {
        public long WindowStart;
        public int Count;
    }

    private ValueTask ProcessFrameAsync(ReadOnlySequence<byte> payload)
    {
        var frame = _frame;
        var endsBlock = _assembler.OnFrame(frame, payload.Length);
        switch (frame.Type)
        {
            case Http2FrameType.Headers:
                return OnHeadersAsync(payload, endsBlock);
            case Http2FrameType.Continuation:
                return OnHeaderFragmentAsync(payload, endsBlock);
            case Http2FrameType.Data:
                return OnDataAsync(payload);
            case Http2FrameType.Settings:
                CheckControlFlood(frame);
                return OnSettingsAsync(payload);
            case Http2FrameType.Ping:
                CheckControlFlood(frame);
                return frame.IsAck ? OnPingAckAsync(frame.PingData) : WriteControlAsync(ControlFrame.PingAck, 0, frame.PingData);
            case Http2FrameType.WindowUpdate:
                return OnWindowUpdateAsync();
            case Http2FrameType.RstStream:
                OnRstStream();
                return ValueTask.CompletedTask;
            case Http2FrameType.GoAway:
                // The client will open no more streams; the ones open finish, then it closes the connection.
                return ValueTask.CompletedTask;
            case Http2FrameType.PushPromise:
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, "a client sent PUSH_PROMISE");
            default:
                // PRIORITY (deprecated, RFC 9113 §5.3.2) and unknown frame types are ignored.
                return ValueTask.CompletedTask;
        }
    }

    private void CheckControlFlood(Http2Frame frame)
    {
        // Each SETTINGS and PING costs an ACK write: a client sending them in a loop gets the connection closed.
        if (!frame.IsAck && Flooded(ref _controlFrames, _options.MaxControlFramesPerWindow))
        {
            throw new Http2ConnectionException(Http2ErrorCode.EnhanceYourCalm, $"more than {_options.MaxControlFramesPerWindow} SETTINGS and PING frames in {_options.FloodWindow.TotalSeconds:0.#} s");
        }
    }

    private void CountReset()
    {
        // Rapid reset (CVE-2023-44487): streams opened and cancelled in a loop each cost a routed request upstream.
        if (Flooded(ref _resets, _options.MaxStreamResetsPerWindow))
        {
            throw new Http2ConnectionException(Http2ErrorCode.EnhanceYourCalm, $"more than {_options.MaxStreamResetsPerWindow} streams reset or refused in {_options.FloodWindow.TotalSeconds:0.#} s");
        }
    }

    private ValueTask OnHeadersAsync(ReadOnlySequence<byte> payload, bool endHeaders)
    {
        var id = _frame.StreamId;
        var endStream = _frame.EndStream;
        Http2ServerStream? stream;
        using (_lock.EnterScope())
        {
            _streams.TryGetValue(id, out stream);
        }

        if (stream is not null)
        {
            // Trailers: a second HEADERS on an open stream must end it (RFC 9113 §8.1).
            if (stream.RemoteClosed)
            {
                throw new Http2StreamException(id, Http2ErrorCode.StreamClosed, "HEADERS on a stream the client already ended");
            }

            if (!endStream)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, "trailers without END_STREAM");
            }

            _trailers.Reset();
            _blockStream = stream;
            _blockIsTrailers = true;
            _blockDiscard = stream.Reset;
            return OnHeaderFragmentAsync(payload, endHeaders);
        }

        if (id <= _lastStreamId || (id & 1) == 0 || IgnoredAfterGoAway(id))
        {
            if ((id & 1) == 0)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"HEADERS on stream {id}: client streams are odd and increasing");
            }

            // A stream that is closed here (we reset it or it finished): decode to keep HPACK in step, then drop.
            _blockStream = null;
            _blockDiscard = true;
            _blockIsTrailers = false;
            return OnHeaderFragmentAsync(payload, endHeaders);
        }

        _lastStreamId = id;
        int active;
        using (_lock.EnterScope())
        {
            // A kept object is safe to reuse here: it is held by no lane and no table entry (Holds == 0), and the frame
            // loop, the only other code that may touch an ended stream, holds none while it starts a new one (frames
            // are processed one at a time, and no header block is in progress: a new HEADERS may not interrupt one).
            if (_freeStreams.TryPop(out stream))
            {
                stream.Reuse(id, _peerInitialWindow, _options.InitialStreamWindowSize);
            }
            else
            {
                stream = new Http2ServerStream(id, _peerInitialWindow, _options.InitialStreamWindowSize);
                _server.OnStreamObjectCreated();
            }

            stream.ReceivingHeaders = true;
            stream.HeadersEndStream = endStream;
            active = _streams.Count;
            _streams.Add(id, stream);
            CountOpenedStreamLocked();
        }

        _builder.Reset();
        _blockStream = stream;
        _blockIsTrailers = false;
        _blockDiscard = false;
        if (active >= _options.MaxConcurrentStreams)
        {
            // Decode (HPACK state) but refuse: the client may retry it elsewhere (RFC 9113 §8.7).
            CountReset();
            _blockDiscard = true;
            stream.Reset = true;
        }

        return OnHeaderFragmentAsync(payload, endHeaders);
    }

    private ValueTask OnHeaderFragmentAsync(ReadOnlySequence<byte> payload, bool endHeaders)
    {
        var stream = _blockStream;
        try
        {
            if (_blockDiscard || stream is null)
            {
                var sink = new DiscardSink();
                _decoder.Decode(payload, endHeaders, ref sink);
            }
            else if (_blockIsTrailers)
            {
                var sink = new TrailerSink(_trailers);
                _decoder.Decode(payload, endHeaders, ref sink);
            }
            else
            {
                var sink = new RequestSink(_builder);
                _decoder.Decode(payload, endHeaders, ref sink);
            }
        }
        catch (HpackHeaderListTooLargeException)
        {
            // Thrown at the block's end after decoding all of it (tables in step): only this stream fails.
            _blockStream = null;
            if (++_oversizedLists > _options.MaxOversizedHeaderLists)
            {
                // HPACK bomb: small blocks that expand past the limit, again and again.
                throw new Http2ConnectionException(Http2ErrorCode.EnhanceYourCalm, $"more than {_options.MaxOversizedHeaderLists} header lists over {_options.MaxHeaderListSize} bytes");
            }

            if (stream is null)
            {
                return ValueTask.CompletedTask;
            }

            if (_blockDiscard)
            {
                // A refused stream is still told so (and leaves the table); a discarded trailer block needs nothing.
                return !_blockIsTrailers && stream.Reset && !stream.LocalClosed ? ResetStreamAsync(stream, Http2ErrorCode.RefusedStream) : ValueTask.CompletedTask;
            }

            return _blockIsTrailers
                ? ResetStreamAsync(stream, Http2ErrorCode.ProtocolError)
                : RespondDirectAsync(stream, 431, ProxyErrors.BadRequest, "The request's header list is larger than the proxy accepts.");
        }

        if (!endHeaders)
        {
            return ValueTask.CompletedTask;
        }

        _blockStream = null;
        if (stream is null)
        {
            return ValueTask.CompletedTask;
        }

        if (_blockDiscard)
        {
            if (!_blockIsTrailers && stream.Reset && !stream.LocalClosed)
            {
                return ResetStreamAsync(stream, Http2ErrorCode.RefusedStream);
            }

            return ValueTask.CompletedTask;
        }

        return _blockIsTrailers ? OnTrailersCompleteAsync(stream) : OnRequestHeadCompleteAsync(stream);
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnRequestHeadCompleteAsync(Http2ServerStream stream)
    {
        stream.ReceivingHeaders = false;
        var endStream = stream.HeadersEndStream;
        var error = _builder.Complete(hasBody: !endStream);
        if (error == Http2FieldError.TooLarge)
        {
            await RespondDirectAsync(stream, 431, ProxyErrors.BadRequest, "The request's header section is larger than the proxy accepts.").ConfigureAwait(false);
            return;
        }

        if (error != Http2FieldError.None)
        {
            Log.MalformedRequest(_server.Logger, stream.Id, error);
            await ResetStreamAsync(stream, Http2ErrorCode.ProtocolError).ConfigureAwait(false);
            return;
        }

        var method = _builder.Method;
        if (method.SequenceEqual("CONNECT"u8))
        {
            await RespondDirectAsync(stream, 501, ProxyErrors.BadRequest, "CONNECT over HTTP/2 is not supported by this proxy.").ConfigureAwait(false);
            return;
        }

        stream.Method = method.SequenceEqual("HEAD"u8) ? Http1Method.Head : Http1Method.Other;
        stream.DeclaredLength = _builder.HasContentLength ? _builder.ContentLength : -1;
        stream.ChunkedRequest = !endStream && !_builder.HasContentLength;
        stream.RemoteClosed = endStream;
        if (endStream && stream.DeclaredLength > 0)
        {
            throw new Http2StreamException(stream.Id, Http2ErrorCode.ProtocolError, "content-length without DATA");
        }

        var lane = RentLane();
        var head = _builder.Head;
        // Parsed here into the lane's spare head unless the parser refuses it (the forwarder then gets the text and
        // answers the refusal) or a test asks for the text path.
        var typed = !_server.Forwarder.Options.TextHeadsForHttp2 && lane.TrySetTypedRequest(head.Span, _server.Forwarder.RequestParser);
        stream.LaneBytesWritten = typed ? 0 : head.Length;
        // Counted first and uncounted by FinishStream when it ends, so a pump that ends at once is not missed.
        using (_lock.EnterScope())
        {
            _activePumps++;
            lane.Stream = stream;
            stream.Lane = lane;
            // The lane's hold, let go by FinishStream.
            stream.Holds++;
        }

        // Its pump starts on the stream inline, and waits for the response head.
        lane.Assign(stream);

        // The lane's reader runs inline: the forwarder routes and sends the request upstream within this wake or write.
        if (typed)
        {
            lane.WakeForTypedRequest();
            return;
        }

        await lane.RequestWriter.WriteAsync(head, CancellationToken.None).ConfigureAwait(false);
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnTrailersCompleteAsync(Http2ServerStream stream)
    {
        if (_trailers.Error != Http2FieldError.None)
        {
            await ResetStreamAsync(stream, Http2ErrorCode.ProtocolError).ConfigureAwait(false);
            return;
        }

        stream.RemoteClosed = true;
        if (stream.DeclaredLength >= 0 && stream.PayloadWritten != stream.DeclaredLength)
        {
            await ResetStreamAsync(stream, Http2ErrorCode.ProtocolError).ConfigureAwait(false);
            return;
        }

        if (stream.Lane is { } lane && !stream.Reset)
        {
            var writer = lane.RequestWriter;
            if (stream.ChunkedRequest)
            {
                try
                {
                    // Last chunk with the trailer section (RFC 9112 §7.1.2).
                    writer.Write("0\r\n"u8);
                    writer.Write(_trailers.Lines);
                    writer.Write("\r\n"u8);
                    stream.LaneBytesWritten += 5 + _trailers.Lines.Length;
                }
                catch (InvalidOperationException)
                {
                    // The lane was closed meanwhile (its response ended).
                    return;
                }
            }

            await FlushLaneAsync(writer).ConfigureAwait(false);
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnDataAsync(ReadOnlySequence<byte> payload)
    {
        var id = _frame.StreamId;
        var frameLength = _frame.PayloadLength;
        // Credits are added from the threads that consume request bytes: the read loop subtracts atomically too.
        if (Interlocked.Add(ref _connectionReceiveWindow, -frameLength) < 0)
        {
            throw new Http2ConnectionException(Http2ErrorCode.FlowControlError, "DATA beyond the connection's flow-control window");
        }

        Http2ServerStream? stream;
        using (_lock.EnterScope())
        {
            _streams.TryGetValue(id, out stream);
        }

        if (stream is null)
        {
            if (id > _lastStreamId)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"DATA on idle stream {id}");
            }

            // A stream closed here: its data is dropped, the connection window credited back (RFC 9113 §6.9).
            await CreditConnectionAsync(frameLength).ConfigureAwait(false);
            return;
        }

        if (stream.ReceivingHeaders || stream.RemoteClosed)
        {
            await CreditConnectionAsync(frameLength).ConfigureAwait(false);
            throw new Http2StreamException(id, Http2ErrorCode.StreamClosed, "DATA after the client ended the stream");
        }

        long streamWindow;
        using (_lock.EnterScope())
        {
            // Credits are added under the same lock by the thread that consumes the request bytes.
            streamWindow = stream.ReceiveWindow -= frameLength;
        }

        if (streamWindow < 0)
        {
            await CreditConnectionAsync(frameLength).ConfigureAwait(false);
            throw new Http2StreamException(id, Http2ErrorCode.FlowControlError, "DATA beyond the stream's flow-control window");
        }

        var endStream = _frame.EndStream;
        var padding = frameLength - (int)payload.Length;
        Http2Lane? lane;
        using (_lock.EnterScope())
        {
            lane = stream.Lane;
        }

        if (stream.Draining)
        {
            // Answered already: drop the data, give the window back, end when the client does or past the limit.
            stream.Drained += frameLength;
            if (endStream || stream.Drained > DrainLimit)
            {
                stream.RemoteClosed = true;
                using (_lock.EnterScope())
                {
                    RemoveStreamLocked(stream);
                }

                // The stream is not touched after this point (its object may carry a later stream).
                await CreditConnectionAsync(frameLength).ConfigureAwait(false);
                if (!endStream)
                {
                    await ResetStreamByIdAsync(id, Http2ErrorCode.NoError).ConfigureAwait(false);
                }

                return;
            }

            await CreditAsync(stream, frameLength).ConfigureAwait(false);
            return;
        }

        if (stream.Reset || lane is null)
        {
            // Reset, or the lane is gone: drop the data, credit the connection window.
            await CreditConnectionAsync(frameLength).ConfigureAwait(false);
            stream.RemoteClosed |= endStream;
            return;
        }

        var written = stream.PayloadWritten + payload.Length;
        if (stream.DeclaredLength >= 0 && (written > stream.DeclaredLength || (endStream && written != stream.DeclaredLength)))
        {
            throw new Http2StreamException(id, Http2ErrorCode.ProtocolError, "DATA length differs from content-length");
        }

        var writer = lane.RequestWriter;
        if (endStream)
        {
            stream.RemoteClosed = true;
        }

        long laneBytes;
        try
        {
            laneBytes = WriteRequestData(writer, payload, stream.ChunkedRequest, endStream);
        }
        catch (InvalidOperationException)
        {
            // The lane was closed meanwhile (its response ended): the data has nowhere to go.
            await CreditConnectionAsync(frameLength).ConfigureAwait(false);
            return;
        }

        stream.PayloadWritten = written;
        stream.LaneBytesWritten += laneBytes;
        if (padding > 0)
        {
            await CreditAsync(stream, padding).ConfigureAwait(false);
        }

        await FlushLaneAsync(writer).ConfigureAwait(false);
    }

    /// <summary>Writes one DATA payload into a lane, chunk-framed when the request has no content-length; returns the bytes written.</summary>
    private static long WriteRequestData(PipeWriter writer, in ReadOnlySequence<byte> payload, bool chunked, bool endStream)
    {
        var laneBytes = payload.Length;
        if (chunked && !payload.IsEmpty)
        {
            Span<byte> size = stackalloc byte[20];
            System.Buffers.Text.Utf8Formatter.TryFormat(payload.Length, size, out var n, new System.Buffers.StandardFormat('x'));
            writer.Write(size[..n]);
            writer.Write("\r\n"u8);
            laneBytes += n + 4;
        }

        foreach (var segment in payload)
        {
            writer.Write(segment.Span);
        }

        if (chunked && !payload.IsEmpty)
        {
            writer.Write("\r\n"u8);
        }

        if (endStream && chunked)
        {
            writer.Write("0\r\n\r\n"u8);
            laneBytes += 5;
        }

        return laneBytes;
    }

    /// <summary>Flushes request bytes into a lane; a lane closed meanwhile (its response ended) drops them.</summary>
    private static async ValueTask FlushLaneAsync(PipeWriter writer)
    {
        try
        {
            await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnSettingsAsync(ReadOnlySequence<byte> payload)
    {
        if (_frame.IsAck)
        {
            return;
        }

        foreach (var setting in new Http2SettingsEnumerator(payload))
        {
            switch (setting.Parameter)
            {
                case Http2SettingsParameter.HeaderTableSize:
                    using (_lock.EnterScope())
                    {
                        _encoder.SetMaxDynamicTableSize((int)Math.Min(setting.Value, int.MaxValue));
                    }

                    break;
                case Http2SettingsParameter.InitialWindowSize:
                    ApplyInitialWindow((int)setting.Value);
                    break;
                case Http2SettingsParameter.MaxFrameSize:
                    Volatile.Write(ref _peerMaxFrameSize, setting.Value);
                    break;
            }
        }

        await WriteControlAsync(ControlFrame.SettingsAck, 0, 0).ConfigureAwait(false);
    }

    private void ApplyInitialWindow(int value)
    {
        using (_lock.EnterScope())
        {
            var delta = value - _peerInitialWindow;
            _peerInitialWindow = value;
            foreach (var stream in _streams.Values)
            {
                // RFC 9113 §6.9.2: the change applies to every open stream's window, which may go negative.
                var updated = stream.SendWindow + delta;
                if (updated > Http2Constants.MaxWindowSize)
                {
                    throw new Http2ConnectionException(Http2ErrorCode.FlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE overflowed a stream window");
                }

                stream.SendWindow = updated;
                stream.SignalWindow();
            }
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnWindowUpdateAsync()
    {
        var id = _frame.StreamId;
        var increment = _frame.WindowIncrement;
        if (id == 0)
        {
            using (_lock.EnterScope())
            {
                _connectionSendWindow += increment;
                if (_connectionSendWindow > Http2Constants.MaxWindowSize)
                {
                    throw new Http2ConnectionException(Http2ErrorCode.FlowControlError, "WINDOW_UPDATE overflowed the connection window");
                }

                foreach (var s in _streams.Values)
                {
                    s.SignalWindow();
                }
            }

            return;
        }

        Http2ServerStream? stream;
        var overflow = false;
        using (_lock.EnterScope())
        {
            if (_streams.TryGetValue(id, out stream))
            {
                stream.SendWindow += increment;
                overflow = stream.SendWindow > Http2Constants.MaxWindowSize;
                stream.SignalWindow();
            }
        }

        if (stream is null && id > _lastStreamId)
        {
            throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"WINDOW_UPDATE on idle stream {id}");
        }

        if (overflow)
        {
            await ResetStreamAsync(stream!, Http2ErrorCode.FlowControlError).ConfigureAwait(false);
        }
    }

    private void OnRstStream()
    {
        var id = _frame.StreamId;
        Http2ServerStream? stream;
        using (_lock.EnterScope())
        {
            _streams.TryGetValue(id, out stream);
        }

        if (stream is null)
        {
            if (id > _lastStreamId)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ProtocolError, $"RST_STREAM on idle stream {id}");
            }

            return;
        }

        var wasOpen = !stream.LocalClosed;
        stream.Reset = true;
        stream.LocalClosed = true;
        AbortLane(stream);
        stream.SignalWindow();
        DropIfLaneless(stream);
        if (wasOpen)
        {
            CountReset();
        }
    }

    // ---- lanes and streams --------------------------------------------------------------------------

    private Http2Lane RentLane()
    {
        using (_lock.EnterScope())
        {
            if (_idleLanes.TryPop(out var idle))
            {
                return idle;
            }
        }

        var lane = new Http2Lane(_connection.LocalEndPoint, _connection.RemoteEndPoint, _server.LanePool, _cancellationToken) { Consumed = _onConsumed };

        // The connection's verified peer (set by its TLS stage) is every stream's peer: policies and logs read it.
        if (_connection.Features.Get<Proxy.Core.Identity.IPeerIdentityFeature>() is { } peer)
        {
            lane.Features.Set(peer);
        }

        using (_lock.EnterScope())
        {
            _lanes.Add(lane);
        }

        // The lane's forwarder and pump live as long as the lane and resume per stream: no execution context.
        using (SuppressedFlow.Begin())
        {
            lane.Session = _server.Forwarder.HandleAsync(lane, _routing, lane.ConnectionClosed);
            lane.ArmForNextStream();
            lane.Pump = PumpLaneAsync(lane);
        }
        return lane;
    }

    // Taken under the lock, reset outside it: a lane's reset runs its pump and forwarder inline, and they come back
    // into this session (FinishStream, OnLaneConsumed) and change the stream table.
    private void ResetAllStreams()
    {
        Http2ServerStream[] streams;
        using (_lock.EnterScope())
        {
            streams = [.. _streams.Values];
        }

        foreach (var stream in streams)
        {
            stream.Reset = true;
            AbortLane(stream);
            stream.SignalWindow();
        }
    }

    private static void AbortLane(Http2ServerStream stream)
    {
        stream.Lane?.Reset();
    }

    /// <summary>
    /// A stream reset here or by the client leaves the table at once when no lane carries it (refused, malformed, answered
    /// by the proxy, draining); with a lane, its pump's <see cref="FinishStream"/> does it. Later frames for its id are
    /// handled as for any closed stream (DATA dropped and credited, HEADERS decoded and dropped).
    /// </summary>
    private void DropIfLaneless(Http2ServerStream stream)
    {
        using (_lock.EnterScope())
        {
            if (stream.Lane is null)
            {
                RemoveStreamLocked(stream);
            }
        }
    }

    /// <summary>Takes the stream out of the table (if it is still there) and lets go of the table's hold on it.</summary>
    private void RemoveStreamLocked(Http2ServerStream stream)
    {
        if (_streams.Remove(stream.Id))
        {
            ReleaseStreamLocked(stream);
        }
    }

    /// <summary>
    /// Lets go of one hold (the table's or a lane's): at none, the object is kept for a later stream. Whoever releases
    /// must not touch the stream afterwards; the frame loop may still read or write an ended stream within the frame it
    /// is processing, which is safe because only the frame loop reuses objects, when it starts a new stream.
    /// </summary>
    private void ReleaseStreamLocked(Http2ServerStream stream)
    {
        if (--stream.Holds == 0 && _freeStreams.Count < MaxFreeStreams)
        {
            _freeStreams.Push(stream);
        }
    }

    /// <summary>The forwarder consumed request bytes of a lane: credit the stream and the connection.</summary>
    private void OnLaneConsumed(Http2Lane lane, long count)
    {
        uint id;
        uint streamIncrement;
        uint connectionIncrement;
        using (_lock.EnterScope())
        {
            // Read under the lock: the pump's FinishStream clears it under the same lock before it lets go of the stream,
            // so the stream read here cannot be carrying a later stream meanwhile.
            var stream = lane.Stream;
            if (stream is null)
            {
                return;
            }

            var consumed = stream.LaneBytesConsumed += count;
            // Payload still in the lane is at most what is still in the lane: never credit more than was consumed.
            var consumedPayload = Math.Max(0, stream.PayloadWritten - (stream.LaneBytesWritten - consumed));
            var credit = consumedPayload - stream.PayloadCredited;
            if (credit <= 0)
            {
                return;
            }

            stream.PayloadCredited += credit;
            id = stream.Id;
            TakeCreditLocked(stream, (int)credit, out streamIncrement, out connectionIncrement);
        }

        if (streamIncrement != 0 || connectionIncrement != 0)
        {
            _ = WriteCreditAsync(id, streamIncrement, connectionIncrement).AsTask();
        }
    }

    /// <summary>Gives <paramref name="count"/> bytes back to the client's windows for the stream and the connection.</summary>
    private ValueTask CreditAsync(Http2ServerStream stream, int count)
    {
        uint id;
        uint streamIncrement;
        uint connectionIncrement;
        using (_lock.EnterScope())
        {
            id = stream.Id;
            TakeCreditLocked(stream, count, out streamIncrement, out connectionIncrement);
        }

        return streamIncrement == 0 && connectionIncrement == 0 ? ValueTask.CompletedTask : WriteCreditAsync(id, streamIncrement, connectionIncrement);
    }

    /// <summary>Adds credit to the pending counts; returns the WINDOW_UPDATE increments due (batched: one per half window, not per frame).</summary>
    private void TakeCreditLocked(Http2ServerStream stream, int count, out uint streamIncrement, out uint connectionIncrement)
    {
        streamIncrement = 0;
        connectionIncrement = 0;
        stream.PendingCredit += count;
        _connectionPendingCredit += count;
        if (!stream.RemoteClosed && stream.PendingCredit >= _options.InitialStreamWindowSize / 2)
        {
            streamIncrement = (uint)stream.PendingCredit;
            stream.ReceiveWindow += stream.PendingCredit;
            stream.PendingCredit = 0;
        }

        if (_connectionPendingCredit >= _options.InitialConnectionWindowSize / 2)
        {
            connectionIncrement = (uint)_connectionPendingCredit;
            _connectionPendingCredit = 0;
        }
    }

    /// <summary>Writes the WINDOW_UPDATEs of a credit (by stream id: the stream object is not touched, it may have ended).</summary>
    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteCreditAsync(uint streamId, uint streamIncrement, uint connectionIncrement)
    {
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (connectionIncrement > 0)
            {
                // The read loop owns the receive window; the increment is applied here under the same order.
                Interlocked.Add(ref _connectionReceiveWindow, connectionIncrement);
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

    private ValueTask CreditConnectionAsync(int count)
    {
        uint increment = 0;
        using (_lock.EnterScope())
        {
            _connectionPendingCredit += count;
            if (_connectionPendingCredit >= _options.InitialConnectionWindowSize / 2)
            {
                increment = (uint)_connectionPendingCredit;
                _connectionPendingCredit = 0;
            }
        }

        if (increment == 0)
        {
            return ValueTask.CompletedTask;
        }

        Interlocked.Add(ref _connectionReceiveWindow, increment);
        return WriteControlAsync(ControlFrame.WindowUpdate, 0, increment);
    }

    private async ValueTask ShutdownAsync(Http2ErrorCode code, string? reason)
    {
        StopIdleTimer();
        if (_idleClosed)
        {
            Log.IdleClosed(_server.Logger, _lastStreamId, reason!);
        }
        else if (reason is not null)
        {
            Log.ConnectionError(_server.Logger, code, reason);
        }

        // Streams in flight finish (their responses are already on the way), unless the connection failed.
        if (code != Http2ErrorCode.NoError)
        {
            ResetAllStreams();
        }

        Task pumps;
        using (_lock.EnterScope())
        {
            pumps = _activePumps == 0 ? Task.CompletedTask : (_pumpsDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        try
        {
            await pumps.WaitAsync(_server.Forwarder.Options.ResponseTimeout + TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            ResetAllStreams();
        }

        Http2Lane[] lanes;
        using (_lock.EnterScope())
        {
            lanes = [.. _lanes];
            _lanes.Clear();
            _idleLanes.Clear();
        }

        foreach (var lane in lanes)
        {
            lane.Close();
        }

        await Task.WhenAll(lanes.Select(l => l.Session)).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var lane in lanes)
        {
            await lane.DisposeAsync().ConfigureAwait(false);
        }

        // A drained connection has sent its final GOAWAY already.
        if (!_outputBroken && !(code == Http2ErrorCode.NoError && DrainedWithGoAway))
        {
            await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                Http2FrameWriter.WriteGoAway(_output, _lastStreamId, code, reason is null ? default : System.Text.Encoding.UTF8.GetBytes(reason));

                // Not deferred: the connection ends when this method returns.
                await FlushNowUnlockedAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ConnectionAbortedException)
            {
            }
            finally
            {
                _writeLock.Release();
            }
        }

        if (code != Http2ErrorCode.NoError || _idleClosed)
        {
            await LingerAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// After a GOAWAY for an error the client is usually still sending (a flood, a body). Closing with its bytes
    /// unread would make the kernel answer with RST, which discards the GOAWAY at the client before it is read.
    /// So: FIN our side, then read and drop what still comes for a moment (bounded in time and bytes), like
    /// nginx's lingering close.
    /// </summary>
    private async ValueTask LingerAsync()
    {
        try
        {
            await _output.CompleteAsync().ConfigureAwait(false);
            using var linger = new CancellationTokenSource(LingerTime, _time);
            long drained = 0;
            while (drained < LingerBytes)
            {
                var result = await _input.ReadAsync(linger.Token).ConfigureAwait(false);
                drained += result.Buffer.Length;
                _input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException or ConnectionAbortedException)
        {
        }
    }

    public void Dispose()
    {
        _drainRegistration.Dispose();
        _headerBlockTimer?.Dispose();
        _idleTimer?.Dispose();
        _builder.Dispose();
        _trailers.Dispose();
        _decoder.Dispose();
        _writeLock.Dispose();
    }
}

using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Transport;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Http2.Server;

/// <summary>The writing half: every frame goes out under one async lock, so frames never interleave and HPACK blocks leave in encoding order.</summary>
internal sealed partial class Http2ServerSession
{
    private enum ControlFrame : byte
    {
        SettingsAck,
        PingAck,
        WindowUpdate,
    }

    private async ValueTask WriteInitialSettingsAsync()
    {
        Http2Setting[] settings =
        [
            new(Http2SettingsParameter.HeaderTableSize, (uint)_options.HeaderTableSize),
            new(Http2SettingsParameter.MaxConcurrentStreams, (uint)_options.MaxConcurrentStreams),
            new(Http2SettingsParameter.InitialWindowSize, (uint)_options.InitialStreamWindowSize),
            new(Http2SettingsParameter.MaxHeaderListSize, (uint)_options.MaxHeaderListSize),
        ];
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            Http2FrameWriter.WriteSettings(_output, settings);
            var extra = _options.InitialConnectionWindowSize - Http2Constants.DefaultInitialWindowSize;
            if (extra > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, (uint)extra);
                Interlocked.Add(ref _connectionReceiveWindow, extra);
            }

            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteControlAsync(ControlFrame kind, uint streamId, ulong value)
    {
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            switch (kind)
            {
                case ControlFrame.SettingsAck:
                    Http2FrameWriter.WriteSettingsAck(_output);
                    break;
                case ControlFrame.PingAck:
                    Http2FrameWriter.WritePing(_output, value, ack: true);
                    break;
                default:
                    Http2FrameWriter.WriteWindowUpdate(_output, streamId, (uint)value);
                    break;
            }

            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>HEADERS for a response head: :status and the fields HTTP/2 allows (hop-by-hop fields dropped, names lowercased).</summary>
    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    /// <param name="flush">False when DATA follows at once (its flush sends both).</param>
    internal async ValueTask<bool> WriteResponseHeadersAsync(Http2ServerStream stream, Http1ResponseHead head, bool endStream, bool flush = true)
    {
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (stream.Reset || _outputBroken)
            {
                return false;
            }

            var block = _block;
            block.ResetWrittenCount();
            _encoder.BeginHeaderBlock(block);
            Span<byte> status = stackalloc byte[3];
            head.StatusCode.TryFormat(status, out _, default, CultureInfo.InvariantCulture);
            _encoder.EncodeHeader(block, ":status"u8, status);
            var headers = head.Headers;
            for (var i = 0; i < headers.Count; i++)
            {
                if (headers.IsHopByHop(i))
                {
                    continue;
                }

                _encoder.EncodeHeader(block, headers.GetName(i), headers.GetValue(i));
            }

            Http2FrameWriter.WriteHeaders(_output, stream.Id, block.WrittenSpan, endStream, Volatile.Read(ref _peerMaxFrameSize));
            if (endStream)
            {
                stream.LocalClosed = true;
            }

            return flush ? await FlushUnlockedAsync().ConfigureAwait(false) : !_outputBroken;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Trailers from a chunked response: HEADERS with END_STREAM (fields HTTP/2 forbids are dropped).</summary>
    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<bool> WriteTrailersAsync(Http2ServerStream stream, Http1HeaderList trailers)
    {
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (stream.Reset || _outputBroken)
            {
                return false;
            }

            var block = _block;
            block.ResetWrittenCount();
            _encoder.BeginHeaderBlock(block);
            for (var i = 0; i < trailers.Count; i++)
            {
                if (!trailers.IsHopByHop(i))
                {
                    _encoder.EncodeHeader(block, trailers.GetName(i), trailers.GetValue(i));
                }
            }

            Http2FrameWriter.WriteHeaders(_output, stream.Id, block.WrittenSpan, endStream: true, Volatile.Read(ref _peerMaxFrameSize));
            stream.LocalClosed = true;
            return await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// DATA within the client's windows: as much as the stream window, the connection window and the peer's
    /// frame size allow, waiting for WINDOW_UPDATE when either window is empty. False when the stream was reset
    /// or the connection broke.
    /// </summary>
    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<bool> WriteDataAsync(Http2ServerStream stream, ReadOnlySequence<byte> data, bool endStream)
    {
        while (true)
        {
            int take;
            Task? wait = null;
            using (_lock.EnterScope())
            {
                if (stream.Reset || _outputBroken)
                {
                    return false;
                }

                var window = Math.Min(stream.SendWindow, _connectionSendWindow);
                take = (int)Math.Min(Math.Min(data.Length, window), Volatile.Read(ref _peerMaxFrameSize));
                if (take <= 0 && !data.IsEmpty)
                {
                    wait = stream.WaitForWindowAsync();
                }
                else
                {
                    stream.SendWindow -= take;
                    _connectionSendWindow -= take;
                }
            }

            if (wait is not null)
            {
                try
                {
                    await wait.WaitAsync(_options.SendStallTimeout, _time, _cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Zero-window stall: the client holds the response (and the upstream connection behind it).
                    bool connectionStalled;
                    using (_lock.EnterScope())
                    {
                        connectionStalled = _connectionSendWindow <= 0;
                    }

                    if (connectionStalled)
                    {
                        AbortConnection(Http2ErrorCode.EnhanceYourCalm, $"the connection flow-control window stayed closed for {_options.SendStallTimeout.TotalSeconds:0.###} s");
                        stream.Reset = true;
                    }
                    else
                    {
                        await ResetStreamAsync(stream, Http2ErrorCode.Cancel).ConfigureAwait(false);
                    }

                    return false;
                }

                continue;
            }

            var last = take == data.Length;
            await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                if (stream.Reset)
                {
                    return false;
                }

                Http2FrameWriter.WriteData(_output, stream.Id, data.Slice(0, take), endStream && last);
                if (endStream && last)
                {
                    stream.LocalClosed = true;
                }

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
                return true;
            }

            data = data.Slice(take);
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ResetStreamAsync(Http2ServerStream stream, Http2ErrorCode code)
    {
        var wasClosed = stream.LocalClosed && stream.Reset;
        var id = stream.Id;
        stream.Reset = true;
        stream.LocalClosed = true;
        AbortLane(stream);
        stream.SignalWindow();
        // Not touched after this (unless a lane still carries it): by id only.
        DropIfLaneless(stream);
        if (wasClosed)
        {
            return;
        }

        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            Http2FrameWriter.WriteRstStream(_output, id, code);
            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask ResetStreamByIdAsync(uint id, Http2ErrorCode code)
    {
        Http2ServerStream? stream;
        using (_lock.EnterScope())
        {
            _streams.TryGetValue(id, out stream);
        }

        if (stream is not null)
        {
            await ResetStreamAsync(stream, code).ConfigureAwait(false);
            return;
        }

        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            Http2FrameWriter.WriteRstStream(_output, id, code);
            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>A proxy-made answer on a stream that never reached a lane (e.g. 431), with the reason header and a sentence.</summary>
    private async ValueTask RespondDirectAsync(Http2ServerStream stream, int status, string error, string sentence)
    {
        var body = Encoding.UTF8.GetBytes(sentence + "\n");
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            var block = _block;
            block.ResetWrittenCount();
            _encoder.BeginHeaderBlock(block);
            _encoder.EncodeHeader(block, ":status"u8, Encoding.ASCII.GetBytes(status.ToString(CultureInfo.InvariantCulture)));
            _encoder.EncodeHeader(block, Encoding.ASCII.GetBytes(ProxyErrors.HeaderName), Encoding.ASCII.GetBytes(error));
            _encoder.EncodeHeader(block, "content-type"u8, "text/plain; charset=utf-8"u8);
            _encoder.EncodeHeader(block, "content-length"u8, Encoding.ASCII.GetBytes(body.Length.ToString(CultureInfo.InvariantCulture)));
            Http2FrameWriter.WriteHeaders(_output, stream.Id, block.WrittenSpan, endStream: false, Volatile.Read(ref _peerMaxFrameSize));
            Http2FrameWriter.WriteData(_output, stream.Id, body, endStream: true);
            if (!stream.RemoteClosed)
            {
                Http2FrameWriter.WriteRstStream(_output, stream.Id, Http2ErrorCode.NoError);
            }

            await FlushUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }

        stream.LocalClosed = true;
        stream.Reset = true;
        var id = stream.Id;
        using (_lock.EnterScope())
        {
            RemoveStreamLocked(stream);
        }

        Log.ProxyAnswer(_server.Logger, id, status, error);
    }

    /// <summary>Flushes the connection output (at the end of the event loop's batch when on one: <see cref="Http2OutputFlusher"/>); the caller holds the write lock. False once the client is gone.</summary>
    private ValueTask<bool> FlushUnlockedAsync() => _flusher.FlushAsync();

    /// <summary>Flushes at once (the caller holds the write lock), after any flush still pending.</summary>
    private ValueTask<bool> FlushNowUnlockedAsync() => _flusher.FlushNowAsync();

    // ---- HPACK sinks --------------------------------------------------------------------------------

    private readonly struct RequestSink(Http2RequestHeadBuilder builder) : IHpackHeaderHandler
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => builder.Add(name, value);

        public void OnStaticIndexedHeader(int index) => builder.Add(HpackStaticTable.Name(index), HpackStaticTable.Value(index));

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => builder.Add(HpackStaticTable.Name(index), value);
    }

    private readonly struct TrailerSink(Http2TrailerLines lines) : IHpackHeaderHandler
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => lines.Add(name, value);

        public void OnStaticIndexedHeader(int index) => lines.Add(HpackStaticTable.Name(index), HpackStaticTable.Value(index));

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => lines.Add(HpackStaticTable.Name(index), value);
    }

    private readonly struct DiscardSink : IHpackHeaderHandler
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
        }

        public void OnStaticIndexedHeader(int index)
        {
        }

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3201, Level = LogLevel.Debug, Message = "HTTP/2 connection error {Code}: {Reason}")]
        public static partial void ConnectionError(ILogger logger, Http2ErrorCode code, string reason);

        [LoggerMessage(EventId = 3202, Level = LogLevel.Debug, Message = "HTTP/2 stream {StreamId} reset: malformed request ({Error})")]
        public static partial void MalformedRequest(ILogger logger, uint streamId, Http2FieldError error);

        [LoggerMessage(EventId = 3203, Level = LogLevel.Debug, Message = "HTTP/2 stream {StreamId} answered by the proxy: {Status} {Error}")]
        public static partial void ProxyAnswer(ILogger logger, uint streamId, int status, string error);

        [LoggerMessage(EventId = 3204, Level = LogLevel.Error, Message = "HTTP/2 stream {StreamId}: the response pump failed unexpectedly")]
        public static partial void PumpFailed(ILogger logger, uint streamId, Exception exception);

        [LoggerMessage(EventId = 3205, Level = LogLevel.Debug, Message = "HTTP/2 connection closed after stream {LastStreamId}: {Reason}")]
        public static partial void IdleClosed(ILogger logger, uint lastStreamId, string reason);
    }
}

/// <summary>A trailer section from HTTP/2, checked (no pseudo-headers, RFC 9113 §8.2 rules) and written as HTTP/1.1 field lines.</summary>
internal sealed class Http2TrailerLines : IDisposable
{
    private readonly ArrayBufferWriter<byte> _lines = new(128);

    public Http2FieldError Error { get; private set; }

    public ReadOnlySpan<byte> Lines => _lines.WrittenSpan;

    public void Reset()
    {
        _lines.ResetWrittenCount();
        Error = Http2FieldError.None;
    }

    public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (Error != Http2FieldError.None)
        {
            return;
        }

        if (!name.IsEmpty && name[0] == (byte)':')
        {
            Error = Http2FieldError.PseudoHeaderInTrailers;
            return;
        }

        var error = Http2FieldCheck.CheckRegular(name, value);
        if (error != Http2FieldError.None)
        {
            Error = error;
            return;
        }

        _lines.Write(name);
        _lines.Write(": "u8);
        _lines.Write(value);
        _lines.Write("\r\n"u8);
    }

    public void Dispose() => _lines.ResetWrittenCount();
}

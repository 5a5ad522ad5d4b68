using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// One client stream of an <see cref="Http2ServerSession"/>: its request goes into a lane as HTTP/1.1 (head, then
/// the DATA payload raw under content-length or re-framed chunked, then trailers), and the lane's HTTP/1.1
/// response comes back out as HEADERS, DATA (within the client's flow-control windows) and trailers.
/// </summary>
internal sealed class Http2ServerStream
{
    private readonly Http2ServerSession _session;
    // The lane's (reused by every stream the lane carries): nothing of the response side is allocated per stream.
    private Http1ResponseHead _response = null!;
    private ContentLengthBodyReader _length = null!;
    private ChunkedBodyReader _chunks = null!;
    private TaskCompletionSource? _windowWaiter;

    public Http2ServerStream(Http2ServerSession session, uint id, int sendWindow, int receiveWindow)
    {
        _session = session;
        Id = id;
        SendWindow = sendWindow;
        ReceiveWindow = receiveWindow;
    }

    public uint Id { get; }

    /// <summary>Bytes this side may still send on the stream (may go negative after a SETTINGS change). Guarded by the session's window lock.</summary>
    public long SendWindow { get; set; }

    /// <summary>Bytes the client may still send on the stream before we credit more. Guarded by the session's lock.</summary>
    public long ReceiveWindow { get; set; }

    /// <summary>Consumed request bytes not yet credited to the client (Interlocked).</summary>
    public long PendingCredit;

    /// <summary>Request payload bytes written into the lane, and all bytes written into it (framing included).</summary>
    public long PayloadWritten { get; set; }

    public long LaneBytesWritten { get; set; }

    /// <summary>Request bytes the lane's consumer took (Interlocked).</summary>
    public long LaneBytesConsumed;

    /// <summary>Payload bytes already credited back to the client.</summary>
    public long PayloadCredited { get; set; }

    /// <summary>The request's method (for HEAD responses without body).</summary>
    public Http1Method Method { get; set; }

    /// <summary>Declared request content-length, or -1.</summary>
    public long DeclaredLength { get; set; } = -1;

    /// <summary>Request body framed chunked towards the lane.</summary>
    public bool ChunkedRequest { get; set; }

    /// <summary>The client ended its side (END_STREAM received).</summary>
    public bool RemoteClosed { get; set; }

    /// <summary>We ended our side (END_STREAM sent) or reset the stream.</summary>
    public bool LocalClosed { get; set; }

    /// <summary>The client reset the stream, or we did.</summary>
    public bool Reset { get; set; }

    /// <summary>The request head section is being decoded (HEADERS without END_HEADERS so far).</summary>
    public bool ReceivingHeaders { get; set; }

    /// <summary>END_STREAM came with the header section being decoded.</summary>
    public bool HeadersEndStream { get; set; }

    public Http2Lane? Lane { get; set; }

    /// <summary>The response is complete but the client is still sending: its DATA is dropped and credited.</summary>
    public bool Draining { get; set; }

    /// <summary>Bytes dropped while <see cref="Draining"/>.</summary>
    public long Drained { get; set; }

    /// <summary>Wakes a response pump waiting for send window (the stream's or the connection's).</summary>
    public void SignalWindow() => Interlocked.Exchange(ref _windowWaiter, null)?.TrySetResult();

    /// <summary>A task that completes at the next <see cref="SignalWindow"/>; check the window again after taking it.</summary>
    public Task WaitForWindowAsync()
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _windowWaiter, waiter);
        return waiter.Task;
    }

    /// <summary>
    /// Pumps the lane's HTTP/1.1 response to the client as HTTP/2 frames until the response ends, the lane fails
    /// or the stream is reset. True when the lane is at a clean message boundary and may carry another stream.
    /// </summary>
    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> PumpResponseAsync(Http2Lane lane, Http1ResponseHeadParser parser)
    {
        _response = lane.ResponseHead;
        _length = lane.LengthReader;
        _chunks = lane.ChunkReader;
        var input = lane.ResponseReader;
        try
        {
            while (true)
            {
                // 1. head (interim 1xx heads are relayed and the loop goes on to the final one)
                SequencePosition consumed;
                ReadOnlySequence<byte> headBuffer;
                while (true)
                {
                    var result = await input.ReadAsync().ConfigureAwait(false);
                    var buffer = result.Buffer;
                    bool parsed;
                    try
                    {
                        parsed = parser.TryParse(buffer, Method, _response, out consumed);
                    }
                    catch (Http1ParseException)
                    {
                        // The forwarder writes what the parser accepts; a failure here means a bug: reset the stream.
                        input.AdvanceTo(buffer.End);
                        await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
                        return false;
                    }

                    if (parsed)
                    {
                        headBuffer = buffer;
                        break;
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        // The lane ended without a response (forwarder gone, stream reset).
                        if (!Reset)
                        {
                            await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
                        }

                        return false;
                    }
                }

                // content-length: 0 (e.g. a gRPC trailers-only response) has no DATA to carry END_STREAM: the HEADERS do.
                var noBody = _response.BodyKind == Http1BodyKind.None || Method == Http1Method.Head
                    || _response.StatusCode is 204 or 304 || _response.IsInterim
                    || (_response.BodyKind == Http1BodyKind.ContentLength && _response.ContentLength == 0);
                var status = _response.StatusCode;
                if (status == 101)
                {
                    // Upgrade does not exist in HTTP/2 (RFC 9113 §8.6); the translated request never asks for it.
                    input.AdvanceTo(consumed);
                    await _session.ResetStreamAsync(this, Http2ErrorCode.ProtocolError).ConfigureAwait(false);
                    return false;
                }

                // Body bytes already behind the head (a small response): HEADERS and DATA leave in one send.
                var flush = noBody || _response.IsInterim || headBuffer.Slice(consumed).IsEmpty;
                if (!await _session.WriteResponseHeadersAsync(this, _response, endStream: noBody && !_response.IsInterim, flush).ConfigureAwait(false))
                {
                    input.AdvanceTo(consumed);
                    return false;
                }

                input.AdvanceTo(consumed);
                if (_response.IsInterim)
                {
                    continue;
                }

                if (noBody)
                {
                    return _response.KeepAlive;
                }

                // 2. body
                return _response.BodyKind switch
                {
                    Http1BodyKind.ContentLength => await PumpLengthAsync(input, _response.ContentLength).ConfigureAwait(false) && _response.KeepAlive,
                    Http1BodyKind.Chunked => await PumpChunkedAsync(input).ConfigureAwait(false) && _response.KeepAlive,
                    _ => await PumpToEndAsync(input).ConfigureAwait(false) && false,
                };
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ConnectionAbortedException)
        {
            // The lane was aborted (a failure after the head was sent) or closed under us: reset the stream.
            if (!Reset)
            {
                await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
            }

            return false;
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> PumpLengthAsync(PipeReader input, long length)
    {
        _length.Reset(length);
        while (!_length.IsComplete)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var data = _length.Read(result.Buffer);
            if (!data.IsEmpty)
            {
                var ok = await _session.WriteDataAsync(this, data, endStream: _length.IsComplete).ConfigureAwait(false);
                input.AdvanceTo(data.End);
                if (!ok)
                {
                    return false;
                }

                continue;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
                return false;
            }
        }

        return true;
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> PumpChunkedAsync(PipeReader input)
    {
        _chunks.Reset();
        while (true)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            ChunkedReadResult read;
            ReadOnlySequence<byte> data;
            SequencePosition consumed;
            try
            {
                read = _chunks.Read(buffer, out data, out consumed);
            }
            catch (Http1ParseException)
            {
                input.AdvanceTo(buffer.End);
                await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
                return false;
            }

            switch (read)
            {
                case ChunkedReadResult.Data:
                    {
                        var ok = await _session.WriteDataAsync(this, data, endStream: false).ConfigureAwait(false);
                        input.AdvanceTo(consumed);
                        if (!ok)
                        {
                            return false;
                        }

                        break;
                    }

                case ChunkedReadResult.Completed:
                    {
                        bool ok;
                        if (_chunks.Trailers.Count > 0)
                        {
                            ok = await _session.WriteTrailersAsync(this, _chunks.Trailers).ConfigureAwait(false);
                        }
                        else
                        {
                            ok = await _session.WriteDataAsync(this, default, endStream: true).ConfigureAwait(false);
                        }

                        input.AdvanceTo(consumed);
                        return ok;
                    }

                default:
                    input.AdvanceTo(consumed, buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        await _session.ResetStreamAsync(this, Http2ErrorCode.InternalError).ConfigureAwait(false);
                        return false;
                    }

                    break;
            }
        }
    }

    // Pooled state machine: this runs for every stream or frame.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> PumpToEndAsync(PipeReader input)
    {
        while (true)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                var ok = await _session.WriteDataAsync(this, buffer, endStream: false).ConfigureAwait(false);
                input.AdvanceTo(buffer.End);
                if (!ok)
                {
                    return false;
                }

                continue;
            }

            input.AdvanceTo(buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return await _session.WriteDataAsync(this, default, endStream: true).ConfigureAwait(false);
            }
        }
    }

}

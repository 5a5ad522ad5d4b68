using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Transport;
using Proxy.Http.Http1;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// The response side of the lanes: each lane has one long-lived pump (<see cref="PumpLaneAsync"/>) that carries the
/// lane's HTTP/1.1 responses back to the client as HEADERS, DATA (within the client's flow-control windows) and
/// trailers, one stream after another. One loop per lane, written as a single async method, rather than an async
/// call per stream: under concurrency a per-stream call's state machine is allocated (the pooling builder's cache
/// holds only a few), while a lane's loop allocates its state machine once for all the streams it carries.
/// </summary>
internal sealed partial class Http2ServerSession
{
    /// <summary>
    /// Pumps the response of every stream the lane is given (<see cref="Http2Lane.Assign"/>) until the lane closes.
    /// Never throws. A stream's pump ends when its response ends (the lane may carry another stream: it goes back to
    /// the idle lanes), the lane fails or the stream is reset (the lane is closed and the loop ends).
    /// </summary>
    private async Task PumpLaneAsync(Http2Lane lane)
    {
        var parser = _server.Forwarder.ResponseParser;
        var response = lane.ResponseHead;
        var length = lane.LengthReader;
        var chunks = lane.ChunkReader;
        var input = lane.ResponseReader;
        while (await lane.NextStreamAsync().ConfigureAwait(false) is { } stream)
        {
            SuppressedFlow.Ensure();
            var reusable = false;
            try
            {
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
                            if (lane.TakeTypedHead())
                            {
                                // The forwarder filled the head itself (Http1ForwardingSession.Http2Head.cs): the pipe
                                // holds only body bytes, if any yet.
                                consumed = buffer.Start;
                                headBuffer = buffer;
                                break;
                            }

                            bool parsed;
                            try
                            {
                                parsed = parser.TryParse(buffer, stream.Method, response, out consumed);
                            }
                            catch (Http1ParseException)
                            {
                                // The forwarder writes what the parser accepts; a failure here means a bug: reset the stream.
                                input.AdvanceTo(buffer.End);
                                await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                                goto Done;
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
                                if (!stream.Reset)
                                {
                                    await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                                }

                                goto Done;
                            }
                        }

                        // content-length: 0 (e.g. a gRPC trailers-only response) has no DATA to carry END_STREAM: the HEADERS do.
                        var noBody = response.BodyKind == Http1BodyKind.None || stream.Method == Http1Method.Head
                            || response.StatusCode is 204 or 304 || response.IsInterim
                            || (response.BodyKind == Http1BodyKind.ContentLength && response.ContentLength == 0);
                        if (response.StatusCode == 101)
                        {
                            // Upgrade does not exist in HTTP/2 (RFC 9113 §8.6); the translated request never asks for it.
                            input.AdvanceTo(consumed);
                            await ResetStreamAsync(stream, Http2ErrorCode.ProtocolError).ConfigureAwait(false);
                            goto Done;
                        }

                        // Body bytes already behind the head (a small response): HEADERS and DATA leave in one send.
                        var flush = noBody || response.IsInterim || headBuffer.Slice(consumed).IsEmpty;
                        if (!await WriteResponseHeadersAsync(stream, response, endStream: noBody && !response.IsInterim, flush).ConfigureAwait(false))
                        {
                            input.AdvanceTo(consumed);
                            goto Done;
                        }

                        input.AdvanceTo(consumed);
                        if (response.IsInterim)
                        {
                            continue;
                        }

                        if (noBody)
                        {
                            reusable = response.KeepAlive;
                            goto Done;
                        }

                        break;
                    }

                    // 2. body
                    switch (response.BodyKind)
                    {
                        case Http1BodyKind.ContentLength:
                            length.Reset(response.ContentLength);
                            while (!length.IsComplete)
                            {
                                var result = await input.ReadAsync().ConfigureAwait(false);
                                var data = length.Read(result.Buffer);
                                if (!data.IsEmpty)
                                {
                                    var ok = await WriteDataAsync(stream, data, endStream: length.IsComplete).ConfigureAwait(false);
                                    input.AdvanceTo(data.End);
                                    if (!ok)
                                    {
                                        goto Done;
                                    }

                                    continue;
                                }

                                input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                                if (result.IsCompleted || result.IsCanceled)
                                {
                                    await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                                    goto Done;
                                }
                            }

                            reusable = response.KeepAlive;
                            goto Done;

                        case Http1BodyKind.Chunked:
                            chunks.Reset();
                            while (true)
                            {
                                var result = await input.ReadAsync().ConfigureAwait(false);
                                var buffer = result.Buffer;
                                ChunkedReadResult read;
                                ReadOnlySequence<byte> data;
                                SequencePosition consumed;
                                try
                                {
                                    read = chunks.Read(buffer, out data, out consumed);
                                }
                                catch (Http1ParseException)
                                {
                                    input.AdvanceTo(buffer.End);
                                    await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                                    goto Done;
                                }

                                if (read == ChunkedReadResult.Data)
                                {
                                    var ok = await WriteDataAsync(stream, data, endStream: false).ConfigureAwait(false);
                                    input.AdvanceTo(consumed);
                                    if (!ok)
                                    {
                                        goto Done;
                                    }
                                }
                                else if (read == ChunkedReadResult.Completed)
                                {
                                    var ok = chunks.Trailers.Count > 0
                                        ? await WriteTrailersAsync(stream, chunks.Trailers).ConfigureAwait(false)
                                        : await WriteDataAsync(stream, default, endStream: true).ConfigureAwait(false);
                                    input.AdvanceTo(consumed);
                                    reusable = ok && response.KeepAlive;
                                    goto Done;
                                }
                                else
                                {
                                    input.AdvanceTo(consumed, buffer.End);
                                    if (result.IsCompleted || result.IsCanceled)
                                    {
                                        await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                                        goto Done;
                                    }
                                }
                            }

                        default:
                            // Until the forwarder closes the lane (a response delimited by the close): never reusable.
                            while (true)
                            {
                                var result = await input.ReadAsync().ConfigureAwait(false);
                                var buffer = result.Buffer;
                                if (!buffer.IsEmpty)
                                {
                                    var ok = await WriteDataAsync(stream, buffer, endStream: false).ConfigureAwait(false);
                                    input.AdvanceTo(buffer.End);
                                    if (!ok)
                                    {
                                        goto Done;
                                    }

                                    continue;
                                }

                                input.AdvanceTo(buffer.End);
                                if (result.IsCompleted || result.IsCanceled)
                                {
                                    await WriteDataAsync(stream, default, endStream: true).ConfigureAwait(false);
                                    goto Done;
                                }
                            }
                    }
                }
                catch (Exception ex) when (ex is InvalidOperationException or IOException or ConnectionAbortedException)
                {
                    // The lane was aborted (a failure after the head was sent) or closed under us: reset the stream.
                    reusable = false;
                    if (!stream.Reset)
                    {
                        await ResetStreamAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ConnectionAbortedException or OperationCanceledException)
            {
                reusable = false;
            }
            catch (Exception e)
            {
                Log.PumpFailed(_server.Logger, stream.Id, e);
                reusable = false;
            }

        Done:
            if (!FinishStream(stream, lane, reusable))
            {
                return;
            }
        }
    }

    /// <summary>
    /// A stream's response has ended: the stream leaves the lane, and the lane goes back to the idle lanes (armed for
    /// its next stream) when it is at a clean message boundary, or is closed. False when the lane's pump should end.
    /// </summary>
    private bool FinishStream(Http2ServerStream stream, Http2Lane lane, bool reusable)
    {
        bool rearmed;
        using (_lock.EnterScope())
        {
            if (--_activePumps == 0)
            {
                _pumpsDone?.TrySetResult();
            }

            lane.Stream = null;
            stream.Lane = null;
            // The stream is not touched after this block: once the table lets go of it too, its object may carry a later stream.
            if (!stream.RemoteClosed && !stream.Reset && stream.LocalClosed)
            {
                // Answered before the client finished sending (RFC 9113 §8.1). Rather than RST_STREAM(NO_ERROR),
                // which some clients (curl 7.88) report as a failure, the rest of a small body is taken and
                // dropped; past DrainLimit the stream is reset with NO_ERROR.
                stream.Draining = true;
                reusable = false;
            }
            else
            {
                RemoveStreamLocked(stream);
            }

            // Armed before it can be rented again, so the next stream's Assign always finds it waiting.
            rearmed = reusable && !stream.Reset && !lane.Aborted && lane.ArmForNextStream();
            ReleaseStreamLocked(stream);
            if (rearmed)
            {
                _idleLanes.Push(lane);
            }
            else
            {
                _lanes.Remove(lane);
            }
        }

        if (!rearmed)
        {
            lane.Close();
        }

        WakeIfDrained();
        return rearmed;
    }
}

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
/// <remarks>
/// Reused: a session keeps the objects of ended streams and hands them to later streams (<see cref="Reuse"/>). An
/// object is given back only when nothing can reach it any more: see <see cref="Holds"/> and
/// <c>Http2ServerSession.ReleaseStream</c>.
/// </remarks>
internal sealed class Http2ServerStream
{
    private TaskCompletionSource? _windowWaiter;

    public Http2ServerStream(uint id, int sendWindow, int receiveWindow)
    {
        Reuse(id, sendWindow, receiveWindow);
    }

    public uint Id { get; private set; }

    /// <summary>
    /// Who still holds the stream outside the frame loop (guarded by the session's lock): 1 while it is in the stream
    /// table, 1 while a lane carries it (from <c>Assign</c> to the pump's <c>FinishStream</c>). At 0 the object is
    /// kept for reuse; the frame loop only reuses it for a new stream, when no frame of its own can still hold it.
    /// </summary>
    public int Holds { get; set; }

    /// <summary>Makes the object a new stream: every field back to its initial value.</summary>
    public void Reuse(uint id, int sendWindow, int receiveWindow)
    {
        Id = id;
        SendWindow = sendWindow;
        ReceiveWindow = receiveWindow;
        Holds = 1;
        PendingCredit = 0;
        PayloadWritten = 0;
        LaneBytesWritten = 0;
        LaneBytesConsumed = 0;
        PayloadCredited = 0;
        Method = default;
        DeclaredLength = -1;
        ChunkedRequest = false;
        RemoteClosed = false;
        LocalClosed = false;
        Reset = false;
        ReceivingHeaders = false;
        HeadersEndStream = false;
        Lane = null;
        Draining = false;
        Drained = 0;
        _windowWaiter = null;
    }

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
    public long DeclaredLength { get; set; }

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
}

using System.Buffers;
using Proxy.Http.Http2.Frames;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// The header read timeout (slowloris, <see cref="Forwarding.Http1ForwarderOptions.HeaderTimeout"/>) for HTTP/2 clients:
/// a header block that has begun (a HEADERS frame without END_HEADERS, or a HEADERS/CONTINUATION frame only partly
/// received) must be complete within the timeout, else the connection ends with GOAWAY(ENHANCE_YOUR_CALM) naming it.
/// While a block is open no other frame may come (RFC 9113 §6.10), so a client that stalls there blocks the whole
/// connection. Checked after each read of the frame loop; the timer is made on the first open block of a connection.
/// </summary>
internal sealed partial class Http2ServerSession
{
    private ITimer? _headerBlockTimer;
    private volatile bool _headerBlockOpen;
    private long _headerBlockSince;

    /// <summary>After a read's frames were processed: <paramref name="rest"/> is what is left of the buffer (a partial frame, if any).</summary>
    private void WatchHeaderBlock(in ReadOnlySequence<byte> rest)
    {
        var limit = _server.Forwarder.Options.HeaderTimeout;
        if (limit == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        var open = _assembler.ExpectsContinuation || IsPartialHeaderFrame(rest);
        if (!open)
        {
            _headerBlockOpen = false;
            return;
        }

        if (_headerBlockOpen)
        {
            return;
        }

        Volatile.Write(ref _headerBlockSince, _time.GetTimestamp());
        _headerBlockOpen = true;
        _headerBlockTimer ??= _time.CreateTimer(static s => ((Http2ServerSession)s!).OnHeaderBlockTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        try
        {
            _headerBlockTimer.Change(limit, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The connection ended meanwhile.
        }
    }

    /// <summary>The frame header (9 bytes; its type is byte 3) of an incomplete HEADERS or CONTINUATION frame.</summary>
    private static bool IsPartialHeaderFrame(in ReadOnlySequence<byte> rest)
    {
        if (rest.Length < 4)
        {
            // Fewer than 4 bytes of a frame: its type is unknown yet; an idle connection is not a slow header block.
            return false;
        }

        Span<byte> head = stackalloc byte[4];
        rest.Slice(0, 4).CopyTo(head);
        return head[3] is (byte)Http2FrameType.Headers or (byte)Http2FrameType.Continuation;
    }

    private void OnHeaderBlockTimer()
    {
        if (!_headerBlockOpen)
        {
            return;
        }

        var limit = _server.Forwarder.Options.HeaderTimeout;
        var elapsed = _time.GetElapsedTime(Volatile.Read(ref _headerBlockSince));
        if (elapsed < limit)
        {
            // Scheduled for an earlier block that completed since: wait for what is left of this one's time.
            try
            {
                _headerBlockTimer!.Change(limit - elapsed, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
            }

            return;
        }

        AbortConnection(Http2ErrorCode.EnhanceYourCalm,
            $"the client did not complete a header block within the header timeout of {limit.TotalMilliseconds:0} ms");
    }
}

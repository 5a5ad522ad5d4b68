using Proxy.Http.Http2.Frames;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// Graceful drain of an HTTP/2 client connection (<see cref="Forwarding.Http1ForwarderOptions.Drain"/>), the two-step
/// GOAWAY of RFC 9113 §6.8:
/// <code>
///   drain fires ─► GOAWAY(last = 2^31-1, NO_ERROR) + PING     "no new streams, please"; streams already on the way still count
///   PING ACK    ─► GOAWAY(last = highest stream processed)     the client saw the first one a round trip ago
///   streams done ─► the frame loop ends; the connection closes (no third GOAWAY)
/// </code>
/// Between the steps every frame is served as usual (request bodies, window updates), so streams in flight finish.
/// A stream the client still opens after the final GOAWAY is decoded (HPACK stays in step) and ignored: the client
/// knows from the GOAWAY's last stream id that it was not processed and may retry it elsewhere. A client that never
/// answers the PING keeps its connection until the drain's timeout closes it.
/// </summary>
internal sealed partial class Http2ServerSession
{
    private const int DrainNone = 0;
    private const int DrainRequested = 1;
    private const int DrainNoticeSent = 2;
    private const int DrainFinalSent = 3;

    /// <summary>Payload of the PING sent with the first GOAWAY ("drain" in ASCII), recognised in its ACK.</summary>
    private const ulong DrainPing = 0x0000_0064_7261_696e;

    private CancellationTokenRegistration _drainRegistration;
    private int _drainState;

    private void RegisterDrain()
    {
        var drain = _server.Forwarder.Options.Drain;
        if (drain.CanBeCanceled)
        {
            // Runs at once when the drain has already begun; the frame loop then starts with the first GOAWAY.
            _drainRegistration = drain.UnsafeRegister(static s => ((Http2ServerSession)s!).OnDrain(), this);
        }
    }

    private void OnDrain()
    {
        if (Interlocked.CompareExchange(ref _drainState, DrainRequested, DrainNone) == DrainNone)
        {
            // Wakes the frame loop, which writes the GOAWAY (it owns the stream ids).
            _input.CancelPendingRead();
        }
    }

    /// <summary>Frame loop, after each read: advances the drain; true when the connection is drained and should end.</summary>
    private async ValueTask<bool> DrainStepAsync()
    {
        switch (Volatile.Read(ref _drainState))
        {
            case DrainRequested:
                _drainState = DrainNoticeSent;
                await WriteGoAwayAsync(Http2Constants.StreamIdMask, ping: true).ConfigureAwait(false);
                return false;
            case DrainFinalSent:
                using (_lock.EnterScope())
                {
                    return _streams.Count == 0;
                }

            default:
                return false;
        }
    }

    /// <summary>A PING ACK: the answer to the drain's PING sends the final GOAWAY.</summary>
    private ValueTask OnPingAckAsync(ulong data)
    {
        if (data != DrainPing || _drainState != DrainNoticeSent)
        {
            return ValueTask.CompletedTask;
        }

        Volatile.Write(ref _drainState, DrainFinalSent);
        return WriteGoAwayAsync(_lastStreamId, ping: false);
    }

    /// <summary>A new stream after the final GOAWAY: true to ignore it (and count it as closed for later frames).</summary>
    private bool IgnoredAfterGoAway(uint id)
    {
        if (_drainState != DrainFinalSent)
        {
            return false;
        }

        _lastStreamId = id;
        return true;
    }

    /// <summary>After a stream is done: wakes the frame loop when that was the last one of a drained connection.</summary>
    private void WakeIfDrained()
    {
        if (Volatile.Read(ref _drainState) != DrainFinalSent)
        {
            return;
        }

        bool drained;
        using (_lock.EnterScope())
        {
            drained = _streams.Count == 0;
        }

        if (drained)
        {
            _input.CancelPendingRead();
        }
    }

    private bool DrainedWithGoAway => Volatile.Read(ref _drainState) == DrainFinalSent;

    private async ValueTask WriteGoAwayAsync(uint lastStreamId, bool ping)
    {
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (_outputBroken)
            {
                return;
            }

            Http2FrameWriter.WriteGoAway(_output, lastStreamId, Http2ErrorCode.NoError);
            if (ping)
            {
                Http2FrameWriter.WritePing(_output, DrainPing, ack: false);
            }

            await FlushNowUnlockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }
}

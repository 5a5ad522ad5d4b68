namespace Proxy.Http.Http2;

/// <summary>Stream states of RFC 9113 §5.1.</summary>
public enum Http2StreamState : byte
{
    /// <summary>Not yet used.</summary>
    Idle,
    /// <summary>Promised by us with PUSH_PROMISE.</summary>
    ReservedLocal,
    /// <summary>Promised by the peer with PUSH_PROMISE.</summary>
    ReservedRemote,
    /// <summary>Both sides may send.</summary>
    Open,
    /// <summary>We sent END_STREAM; the peer may still send.</summary>
    HalfClosedLocal,
    /// <summary>The peer sent END_STREAM; we may still send.</summary>
    HalfClosedRemote,
    /// <summary>Done (both END_STREAMs, or RST_STREAM either way).</summary>
    Closed,
}

/// <summary>
/// The stream state machine of RFC 9113 §5.1 as pure functions: given a state and a frame sent or received, the
/// next state, or the error an illegal receipt produces. No I/O and no stream table: the connection keeps the
/// state per stream (and treats streams it no longer tracks, with ids at or below the highest it has seen, as
/// <see cref="Http2StreamState.Closed"/>). The lifecycle (RFC 9113 §5.1, Figure 2; H = HEADERS, PP = PUSH_PROMISE,
/// ES = END_STREAM, R = RST_STREAM):
/// <code>
///                          +--------+
///                  send PP |        | recv PP
///                 ,--------+  idle  +--------.
///                /         |        |         \
///               v          +--------+          v
///        +----------+          |           +----------+
///        |          |          | send H /  |          |
/// ,------+ reserved |          | recv H    | reserved +------.
/// |      | (local)  |          |           | (remote) |      |
/// |      +---+------+          v           +------+---+      |
/// |          |             +--------+             |          |
/// |          |     recv ES |        | send ES     |          |
/// |   send H |     ,-------+  open  +-------.     | recv H   |
/// |          |    /        |        |        \    |          |
/// |          v   v         +---+----+         v   v          |
/// |      +----------+          |           +----------+      |
/// |      |   half-  |          |           |   half-  |      |
/// |      |  closed  |          | send R /  |  closed  |      |
/// |      | (remote) |          | recv R    | (local)  |      |
/// |      +----+-----+          |           +-----+----+      |
/// |           |                |                 |           |
/// |           | send ES /      |       recv ES / |           |
/// |           | send R /       v        send R / |           |
/// |           | recv R     +--------+   recv R   |           |
/// | send R /  `-----------&gt;|        |&lt;-----------'  send R / |
/// | recv R                 | closed |               recv R   |
/// `-----------------------&gt;|        |&lt;-----------------------'
///                          +--------+
/// </code>
/// </summary>
public static class Http2StreamStates
{
    /// <summary>
    /// The state after receiving a frame of <paramref name="type"/> on a stream in <paramref name="state"/>
    /// (<paramref name="endStream"/>: the frame carries END_STREAM). Frames that do not change the state return it
    /// unchanged; unknown frame types never reach here (the connection ignores them). A PUSH_PROMISE is received on
    /// the associated stream: pass it here for that stream and use <see cref="ReceivePromise"/> for the promised one.
    /// Throws <see cref="Http2ConnectionException"/> (PROTOCOL_ERROR) or <see cref="Http2StreamException"/>
    /// (STREAM_CLOSED) as §5.1 requires.
    /// </summary>
    public static Http2StreamState Receive(Http2StreamState state, uint streamId, Http2FrameType type, bool endStream)
    {
        if (type == Http2FrameType.Priority)
        {
            // PRIORITY may arrive in every state, idle and closed included (RFC 9113 §5.1, §6.3).
            return state;
        }

        switch (state)
        {
            case Http2StreamState.Idle:
                if (type == Http2FrameType.Headers)
                {
                    return endStream ? Http2StreamState.HalfClosedRemote : Http2StreamState.Open;
                }

                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "frame_on_idle_stream");
                break;
            case Http2StreamState.ReservedLocal:
                if (type == Http2FrameType.RstStream)
                {
                    return Http2StreamState.Closed;
                }

                if (type == Http2FrameType.WindowUpdate)
                {
                    return state;
                }

                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "frame_on_reserved_local_stream");
                break;
            case Http2StreamState.ReservedRemote:
                if (type == Http2FrameType.RstStream)
                {
                    return Http2StreamState.Closed;
                }

                if (type == Http2FrameType.Headers)
                {
                    return endStream ? Http2StreamState.Closed : Http2StreamState.HalfClosedLocal;
                }

                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "frame_on_reserved_remote_stream");
                break;
            case Http2StreamState.Open:
                if (type == Http2FrameType.RstStream)
                {
                    return Http2StreamState.Closed;
                }

                return endStream && CarriesEndStream(type) ? Http2StreamState.HalfClosedRemote : state;
            case Http2StreamState.HalfClosedLocal:
                if (type == Http2FrameType.RstStream)
                {
                    return Http2StreamState.Closed;
                }

                return endStream && CarriesEndStream(type) ? Http2StreamState.Closed : state;
            case Http2StreamState.HalfClosedRemote:
                if (type == Http2FrameType.RstStream)
                {
                    return Http2StreamState.Closed;
                }

                if (type == Http2FrameType.WindowUpdate)
                {
                    return state;
                }

                Http2Throw.Stream(streamId, Http2ErrorCode.StreamClosed, "frame_on_half_closed_stream");
                break;
            default:
                // Closed: WINDOW_UPDATE and RST_STREAM may still be in flight from before the peer saw the close
                // (RFC 9113 §5.1, "closed"); anything else is a stream error.
                if (type is Http2FrameType.WindowUpdate or Http2FrameType.RstStream)
                {
                    return state;
                }

                Http2Throw.Stream(streamId, Http2ErrorCode.StreamClosed, "frame_on_closed_stream");
                break;
        }

        return state;
    }

    /// <summary>
    /// The state after sending a frame of <paramref name="type"/>. Sending what §5.1 forbids is a bug of ours,
    /// not of the peer: it throws <see cref="InvalidOperationException"/>. RST_STREAM may be sent in any state but idle.
    /// </summary>
    public static Http2StreamState Send(Http2StreamState state, Http2FrameType type, bool endStream)
    {
        if (type == Http2FrameType.Priority)
        {
            return state;
        }

        if (type == Http2FrameType.RstStream)
        {
            return state == Http2StreamState.Idle ? throw Illegal(state, type) : Http2StreamState.Closed;
        }

        return state switch
        {
            Http2StreamState.Idle when type == Http2FrameType.Headers =>
                endStream ? Http2StreamState.HalfClosedLocal : Http2StreamState.Open,
            Http2StreamState.ReservedLocal when type == Http2FrameType.Headers =>
                endStream ? Http2StreamState.Closed : Http2StreamState.HalfClosedRemote,
            Http2StreamState.ReservedRemote when type == Http2FrameType.WindowUpdate => state,
            Http2StreamState.Open =>
                endStream && CarriesEndStream(type) ? Http2StreamState.HalfClosedLocal : state,
            Http2StreamState.HalfClosedLocal when type == Http2FrameType.WindowUpdate => state,
            Http2StreamState.HalfClosedRemote =>
                endStream && CarriesEndStream(type) ? Http2StreamState.Closed : state,
            _ => throw Illegal(state, type),
        };
    }

    /// <summary>The promised stream of a received PUSH_PROMISE: idle becomes reserved (remote); any other state is a PROTOCOL_ERROR.</summary>
    public static Http2StreamState ReceivePromise(Http2StreamState promisedState)
    {
        if (promisedState != Http2StreamState.Idle)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, "promised_stream_not_idle");
        }

        return Http2StreamState.ReservedRemote;
    }

    /// <summary>The promised stream of a PUSH_PROMISE we send: idle becomes reserved (local).</summary>
    public static Http2StreamState SendPromise(Http2StreamState promisedState) =>
        promisedState == Http2StreamState.Idle ? Http2StreamState.ReservedLocal : throw Illegal(promisedState, Http2FrameType.PushPromise);

    private static bool CarriesEndStream(Http2FrameType type) => type is Http2FrameType.Data or Http2FrameType.Headers;

    private static InvalidOperationException Illegal(Http2StreamState state, Http2FrameType type) =>
        new($"cannot send {type} on a stream in state {state}");
}

/// <summary>Stream identifier rules of RFC 9113 §5.1.1.</summary>
public static class Http2StreamIds
{
    /// <summary>Odd identifiers are opened by clients, even ones (except 0) by servers.</summary>
    public static bool IsClientInitiated(uint streamId) => (streamId & 1) == 1;

    /// <summary>
    /// Checks the identifier of a stream the peer opens (HEADERS on an unknown stream) or promises (PUSH_PROMISE):
    /// it must have the peer's parity (odd from a client, even from a server) and be greater than every stream the
    /// peer opened or reserved before (<paramref name="lastPeerStreamId"/>). Else a connection error PROTOCOL_ERROR.
    /// </summary>
    public static void ValidateNewPeerStream(uint streamId, uint lastPeerStreamId, bool peerIsClient)
    {
        if (streamId == 0 || IsClientInitiated(streamId) != peerIsClient)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, "stream_id_parity");
        }

        if (streamId <= lastPeerStreamId)
        {
            Http2Throw.Connection(Http2ErrorCode.ProtocolError, "stream_id_not_increasing");
        }
    }
}

namespace Proxy.Http.Http2;

/// <summary>
/// Send side of one flow-control window (RFC 9113 §5.2, §6.9): how many DATA payload bytes we may still send on
/// a stream (or on the connection, stream 0). Credited by the peer's WINDOW_UPDATE, moved by the peer's
/// SETTINGS_INITIAL_WINDOW_SIZE (stream windows only), and may go negative after such a change. A mutable struct
/// held in a field of the connection or stream: do not copy it.
/// </summary>
public struct Http2FlowWindow
{
    // Kept as long: the intermediate sums of credits and SETTINGS deltas may leave the int range before they are refused.
    private long _available;

    /// <summary>Starts with the default 65535 bytes (note: <c>default(Http2FlowWindow)</c> is an empty window).</summary>
    public Http2FlowWindow()
        : this(Http2Constants.DefaultInitialWindowSize)
    {
    }

    /// <summary>Starts with <paramref name="initialSize"/> bytes (the peer's SETTINGS_INITIAL_WINDOW_SIZE for a stream).</summary>
    public Http2FlowWindow(int initialSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialSize);
        _available = initialSize;
    }

    /// <summary>Bytes that may be sent now; negative after the peer shrank the initial window below what was in flight.</summary>
    public readonly int Available => (int)_available;

    /// <summary>Takes up to <paramref name="wanted"/> bytes of the window and returns how many were granted (0 when the window is empty or negative).</summary>
    public int Take(int wanted)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(wanted);
        var granted = (int)Math.Clamp(_available, 0, wanted);
        _available -= granted;
        return granted;
    }

    /// <summary>Consumes exactly <paramref name="bytes"/> if the window allows it; false (unchanged) otherwise.</summary>
    public bool TryConsume(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes > _available)
        {
            return false;
        }

        _available -= bytes;
        return true;
    }

    /// <summary>
    /// Applies a received WINDOW_UPDATE increment (1..2^31-1, as the reader guarantees). A window above 2^31-1 is a
    /// FLOW_CONTROL_ERROR: connection error for <paramref name="streamId"/> 0, stream error otherwise (RFC 9113 §6.9.1).
    /// </summary>
    public void Credit(uint increment, uint streamId)
    {
        var next = _available + increment;
        if (next > Http2Constants.MaxWindowSize)
        {
            if (streamId == 0)
            {
                Http2Throw.Connection(Http2ErrorCode.FlowControlError, "window_overflow");
            }

            Http2Throw.Stream(streamId, Http2ErrorCode.FlowControlError, "window_overflow");
        }

        _available = next;
    }

    /// <summary>
    /// Applies the peer's change of SETTINGS_INITIAL_WINDOW_SIZE from <paramref name="oldInitialSize"/> to
    /// <paramref name="newInitialSize"/> to a stream window (never the connection window): the difference is added,
    /// which may leave the window negative. A result above 2^31-1 is a connection error FLOW_CONTROL_ERROR (RFC 9113 §6.9.2).
    /// </summary>
    public void ApplyInitialWindowSizeChange(int oldInitialSize, int newInitialSize)
    {
        var next = _available + ((long)newInitialSize - oldInitialSize);
        if (next > Http2Constants.MaxWindowSize)
        {
            Http2Throw.Connection(Http2ErrorCode.FlowControlError, "window_overflow");
        }

        _available = next;
    }
}

/// <summary>
/// Receive side of one flow-control window: what the peer may still send, and when to give credit back. DATA
/// counts its whole payload, padding included (<c>Http2Frame.PayloadLength</c>), when it arrives
/// (<see cref="OnData"/>); bytes count as consumed when the proxy has forwarded them (<see cref="OnConsumed"/>);
/// credit goes back in one WINDOW_UPDATE once half the window is consumed (<see cref="TryTakeUpdate"/>), which
/// keeps the updates few without stalling a sender that fills the window. A mutable struct: do not copy it.
/// </summary>
public struct Http2ReceiveWindow
{
    private int _size;
    private int _available;
    private int _pending;

    /// <summary>Starts with the default 65535 bytes (note: <c>default(Http2ReceiveWindow)</c> is an empty window).</summary>
    public Http2ReceiveWindow()
        : this(Http2Constants.DefaultInitialWindowSize)
    {
    }

    /// <summary>Starts with the window we advertised (our SETTINGS_INITIAL_WINDOW_SIZE for a stream).</summary>
    public Http2ReceiveWindow(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _size = size;
        _available = size;
        _pending = 0;
    }

    /// <summary>The window size we aim to keep open.</summary>
    public readonly int Size => _size;

    /// <summary>Bytes the peer may still send before it must wait (may be negative after we shrank the initial window).</summary>
    public readonly int Available => _available;

    /// <summary>Bytes consumed but not yet credited back.</summary>
    public readonly int Pending => _pending;

    /// <summary>
    /// Accounts a received DATA frame of <paramref name="length"/> payload bytes. More than the window allows is a
    /// FLOW_CONTROL_ERROR: connection error on the connection window (stream 0), stream error on a stream window.
    /// </summary>
    public void OnData(int length, uint streamId)
    {
        if (length > _available)
        {
            if (streamId == 0)
            {
                Http2Throw.Connection(Http2ErrorCode.FlowControlError, "flow_control_violated");
            }

            Http2Throw.Stream(streamId, Http2ErrorCode.FlowControlError, "flow_control_violated");
        }

        _available -= length;
    }

    /// <summary>Records that <paramref name="length"/> received bytes have been processed (forwarded) and may be credited back.</summary>
    public void OnConsumed(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _pending += length;
    }

    /// <summary>
    /// True when a WINDOW_UPDATE should be sent now: at least half the window has been consumed. The increment is
    /// then credited to <see cref="Available"/> and <see cref="Pending"/> starts over.
    /// </summary>
    public bool TryTakeUpdate(out uint increment)
    {
        // Half the window: the usual balance between frame count and keeping the sender busy.
        if (_pending == 0 || _pending < _size / 2)
        {
            increment = 0;
            return false;
        }

        increment = (uint)_pending;
        _available += _pending;
        _pending = 0;
        return true;
    }

    /// <summary>
    /// Our SETTINGS_INITIAL_WINDOW_SIZE changed (acknowledged by the peer): a stream window moves by the difference,
    /// exactly as the peer's send window does.
    /// </summary>
    public void ApplyInitialWindowSizeChange(int newSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(newSize);
        _available += newSize - _size;
        _size = newSize;
    }

    /// <summary>
    /// Enlarges the connection window (which SETTINGS does not move) to <paramref name="newSize"/>: returns the
    /// WINDOW_UPDATE increment to send on stream 0, or 0 if the window is not larger.
    /// </summary>
    public uint GrowTo(int newSize)
    {
        if (newSize <= _size)
        {
            return 0;
        }

        var increment = newSize - _size;
        _size = newSize;
        _available += increment;
        return (uint)increment;
    }
}

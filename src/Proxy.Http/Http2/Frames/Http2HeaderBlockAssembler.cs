namespace Proxy.Http.Http2.Frames;

/// <summary>
/// Enforces the field-block sequencing of RFC 9113 §4.3 and §6.10 across frames, and bounds one block: after
/// HEADERS or PUSH_PROMISE without END_HEADERS only CONTINUATION frames on the same stream may follow until one
/// carries END_HEADERS; a CONTINUATION anywhere else is a PROTOCOL_ERROR. The caps (total fragment bytes, number
/// of frames) defend against the CONTINUATION flood, where a peer streams an endless block the receiver must
/// buffer or decode. One instance per connection; run every frame the reader returns through
/// <see cref="OnFrame"/> (unknown types too) before acting on it.
/// </summary>
public sealed class Http2HeaderBlockAssembler
{
    /// <summary>Default cap on the fragment bytes of one field block (compressed size).</summary>
    public const int DefaultMaxBlockSize = 64 * 1024;

    /// <summary>Default cap on the frames (HEADERS/PUSH_PROMISE plus CONTINUATIONs) of one field block.</summary>
    public const int DefaultMaxFrames = 128;

    private readonly int _maxBlockSize;
    private readonly int _maxFrames;

    /// <summary>Creates the tracker with the given caps.</summary>
    public Http2HeaderBlockAssembler(int maxBlockSize = DefaultMaxBlockSize, int maxFrames = DefaultMaxFrames)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBlockSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrames, 1);
        _maxBlockSize = maxBlockSize;
        _maxFrames = maxFrames;
    }

    /// <summary>A block was started without END_HEADERS: the next frame must be a CONTINUATION on <see cref="StreamId"/>.</summary>
    public bool ExpectsContinuation { get; private set; }

    /// <summary>Stream of the block in progress (or of the last block).</summary>
    public uint StreamId { get; private set; }

    /// <summary>HEADERS or PUSH_PROMISE: the frame that started the block in progress (or the last block).</summary>
    public Http2FrameType BlockType { get; private set; }

    /// <summary>Fragment bytes of the block so far.</summary>
    public int BlockSize { get; private set; }

    /// <summary>Frames of the block so far.</summary>
    public int FrameCount { get; private set; }

    /// <summary>
    /// Checks <paramref name="frame"/> (with its fragment length, the payload slice length the reader returned) against
    /// the sequencing rule and the caps. Returns true when the frame ends a field block (HEADERS, PUSH_PROMISE or
    /// CONTINUATION with END_HEADERS): the connection may then decode the whole block. Throws
    /// <see cref="Http2ConnectionException"/>: PROTOCOL_ERROR for a frame out of sequence, ENHANCE_YOUR_CALM past a cap.
    /// </summary>
    public bool OnFrame(Http2Frame frame, long fragmentLength)
    {
        if (ExpectsContinuation)
        {
            if (frame.Type != Http2FrameType.Continuation || frame.StreamId != StreamId)
            {
                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "continuation_expected");
            }

            Add(fragmentLength);
            ExpectsContinuation = (frame.Flags & Http2Flags.EndHeaders) == 0;
            return !ExpectsContinuation;
        }

        switch (frame.Type)
        {
            case Http2FrameType.Headers:
            case Http2FrameType.PushPromise:
                StreamId = frame.StreamId;
                BlockType = frame.Type;
                BlockSize = 0;
                FrameCount = 0;
                Add(fragmentLength);
                ExpectsContinuation = (frame.Flags & Http2Flags.EndHeaders) == 0;
                return !ExpectsContinuation;
            case Http2FrameType.Continuation:
                Http2Throw.Connection(Http2ErrorCode.ProtocolError, "unexpected_continuation");
                return false;
            default:
                return false;
        }
    }

    /// <summary>Forgets any block in progress (a new connection).</summary>
    public void Reset()
    {
        ExpectsContinuation = false;
        StreamId = 0;
        BlockType = default;
        BlockSize = 0;
        FrameCount = 0;
    }

    private void Add(long fragmentLength)
    {
        FrameCount++;
        if (fragmentLength > _maxBlockSize - BlockSize)
        {
            Http2Throw.Connection(Http2ErrorCode.EnhanceYourCalm, "header_block_too_large");
        }

        if (FrameCount > _maxFrames)
        {
            Http2Throw.Connection(Http2ErrorCode.EnhanceYourCalm, "header_block_too_many_frames");
        }

        BlockSize += (int)fragmentLength;
    }
}

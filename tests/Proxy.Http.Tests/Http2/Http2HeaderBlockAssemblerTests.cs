using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;

namespace Proxy.Http.Tests.Http2;

public sealed class Http2HeaderBlockAssemblerTests
{
    private static Http2Frame F(Http2FrameType type, uint streamId, byte flags = 0, int length = 10)
    {
        var frame = new Http2Frame();
        frame.Set(type, flags, streamId, length);
        return frame;
    }

    private static void AssertProtocolError(Http2HeaderBlockAssembler assembler, Http2Frame frame)
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => assembler.OnFrame(frame, frame.PayloadLength));
        Assert.Equal(Http2ErrorCode.ProtocolError, ex.ErrorCode);
    }

    [Fact]
    public void OnFrame_HeadersWithEndHeaders_CompletesAtOnce()
    {
        var assembler = new Http2HeaderBlockAssembler();
        Assert.True(assembler.OnFrame(F(Http2FrameType.Headers, 1, Http2Flags.EndHeaders), 10));
        Assert.False(assembler.ExpectsContinuation);
        Assert.Equal(10, assembler.BlockSize);
        Assert.False(assembler.OnFrame(F(Http2FrameType.Data, 1), 10));
    }

    [Fact]
    public void OnFrame_HeadersThenContinuations_CompletesOnEndHeaders()
    {
        var assembler = new Http2HeaderBlockAssembler();
        Assert.False(assembler.OnFrame(F(Http2FrameType.Headers, 3, Http2Flags.EndStream), 10));
        Assert.True(assembler.ExpectsContinuation);
        Assert.Equal(3u, assembler.StreamId);
        Assert.False(assembler.OnFrame(F(Http2FrameType.Continuation, 3), 10));
        Assert.True(assembler.OnFrame(F(Http2FrameType.Continuation, 3, Http2Flags.EndHeaders), 5));
        Assert.Equal(25, assembler.BlockSize);
        Assert.Equal(3, assembler.FrameCount);
        Assert.Equal(Http2FrameType.Headers, assembler.BlockType);
        Assert.False(assembler.ExpectsContinuation);
    }

    [Fact]
    public void OnFrame_PushPromiseThenContinuation_Tracked()
    {
        var assembler = new Http2HeaderBlockAssembler();
        Assert.False(assembler.OnFrame(F(Http2FrameType.PushPromise, 1), 4));
        Assert.Equal(Http2FrameType.PushPromise, assembler.BlockType);
        Assert.True(assembler.OnFrame(F(Http2FrameType.Continuation, 1, Http2Flags.EndHeaders), 4));
    }

    [Theory]
    [InlineData(Http2FrameType.Data, 1u)]
    [InlineData(Http2FrameType.Headers, 1u)]
    [InlineData(Http2FrameType.Headers, 3u)]
    [InlineData(Http2FrameType.Priority, 1u)]
    [InlineData(Http2FrameType.RstStream, 1u)]
    [InlineData(Http2FrameType.Settings, 0u)]
    [InlineData(Http2FrameType.Ping, 0u)]
    [InlineData(Http2FrameType.WindowUpdate, 0u)]
    [InlineData(Http2FrameType.Continuation, 3u)]
    [InlineData((Http2FrameType)0x42, 1u)]
    public void OnFrame_AnythingButContinuationOnTheSameStreamInsideABlock_ProtocolError(Http2FrameType type, uint streamId)
    {
        var assembler = new Http2HeaderBlockAssembler();
        assembler.OnFrame(F(Http2FrameType.Headers, 1), 10);
        AssertProtocolError(assembler, F(type, streamId, Http2Flags.EndHeaders));
    }

    [Fact]
    public void OnFrame_ContinuationWithoutABlock_ProtocolError()
    {
        var assembler = new Http2HeaderBlockAssembler();
        AssertProtocolError(assembler, F(Http2FrameType.Continuation, 1, Http2Flags.EndHeaders));
        assembler.OnFrame(F(Http2FrameType.Headers, 1, Http2Flags.EndHeaders), 10);
        AssertProtocolError(assembler, F(Http2FrameType.Continuation, 1, Http2Flags.EndHeaders));
    }

    [Fact]
    public void OnFrame_UnknownFrameOutsideABlock_Ignored()
    {
        var assembler = new Http2HeaderBlockAssembler();
        Assert.False(assembler.OnFrame(F((Http2FrameType)0x42, 0), 10));
        Assert.False(assembler.ExpectsContinuation);
    }

    [Fact]
    public void OnFrame_BlockAtTheByteCap_AcceptedAndOneMoreByteRefused()
    {
        var assembler = new Http2HeaderBlockAssembler(maxBlockSize: 100);
        assembler.OnFrame(F(Http2FrameType.Headers, 1), 60);
        Assert.True(assembler.OnFrame(F(Http2FrameType.Continuation, 1, Http2Flags.EndHeaders), 40));

        assembler.OnFrame(F(Http2FrameType.Headers, 3), 60);
        var ex = Assert.Throws<Http2ConnectionException>(() => assembler.OnFrame(F(Http2FrameType.Continuation, 3), 41));
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, ex.ErrorCode);
    }

    [Fact]
    public void OnFrame_HeadersAloneOverTheByteCap_Refused()
    {
        var assembler = new Http2HeaderBlockAssembler(maxBlockSize: 100);
        var ex = Assert.Throws<Http2ConnectionException>(() => assembler.OnFrame(F(Http2FrameType.Headers, 1, Http2Flags.EndHeaders), 101));
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, ex.ErrorCode);
    }

    [Fact]
    public void OnFrame_EmptyContinuationFlood_RefusedAtTheFrameCap()
    {
        var assembler = new Http2HeaderBlockAssembler(maxFrames: 4);
        assembler.OnFrame(F(Http2FrameType.Headers, 1), 0);
        assembler.OnFrame(F(Http2FrameType.Continuation, 1), 0);
        assembler.OnFrame(F(Http2FrameType.Continuation, 1), 0);
        assembler.OnFrame(F(Http2FrameType.Continuation, 1), 0);
        var ex = Assert.Throws<Http2ConnectionException>(() => assembler.OnFrame(F(Http2FrameType.Continuation, 1), 0));
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, ex.ErrorCode);
    }

    [Fact]
    public void Reset_BlockInProgress_Forgotten()
    {
        var assembler = new Http2HeaderBlockAssembler();
        assembler.OnFrame(F(Http2FrameType.Headers, 1), 10);
        assembler.Reset();
        Assert.False(assembler.ExpectsContinuation);
        Assert.False(assembler.OnFrame(F(Http2FrameType.Data, 1), 10));
    }
}

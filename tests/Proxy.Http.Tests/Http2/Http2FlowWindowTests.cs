using Proxy.Http.Http2;

namespace Proxy.Http.Tests.Http2;

public sealed class Http2FlowWindowTests
{
    private const int Max = int.MaxValue;

    [Fact]
    public void Take_MoreThanAvailable_GrantsTheRest()
    {
        var window = new Http2FlowWindow();
        Assert.Equal(65535, window.Available);
        Assert.Equal(65000, window.Take(65000));
        Assert.Equal(535, window.Take(1000));
        Assert.Equal(0, window.Take(1));
        Assert.Equal(0, window.Available);
    }

    [Fact]
    public void TryConsume_BeyondWindow_FalseAndUnchanged()
    {
        var window = new Http2FlowWindow(10);
        Assert.False(window.TryConsume(11));
        Assert.Equal(10, window.Available);
        Assert.True(window.TryConsume(10));
        Assert.Equal(0, window.Available);
    }

    [Fact]
    public void Credit_UpToMaxWindow_Accepted()
    {
        var window = new Http2FlowWindow(0);
        window.Credit(Max, 1);
        Assert.Equal(Max, window.Available);
        var connection = new Http2FlowWindow();
        connection.Credit(Max - 65535, 0);
        Assert.Equal(Max, connection.Available);
    }

    [Fact]
    public void Credit_PastMaxWindowOnConnection_ConnectionFlowControlError()
    {
        var window = new Http2FlowWindow();
        var ex = Assert.Throws<Http2ConnectionException>(() => window.Credit(Max - 65534, 0));
        Assert.Equal(Http2ErrorCode.FlowControlError, ex.ErrorCode);
        Assert.Equal(65535, window.Available);
    }

    [Fact]
    public void Credit_PastMaxWindowOnStream_StreamFlowControlError()
    {
        var window = new Http2FlowWindow(Max);
        var ex = Assert.Throws<Http2StreamException>(() => window.Credit(1, 5));
        Assert.Equal(Http2ErrorCode.FlowControlError, ex.ErrorCode);
        Assert.Equal(5u, ex.StreamId);
    }

    [Fact]
    public void ApplyInitialWindowSizeChange_ShrinkBelowInFlight_GoesNegativeThenCreditsBack()
    {
        var window = new Http2FlowWindow();
        Assert.Equal(60000, window.Take(60000));
        window.ApplyInitialWindowSizeChange(65535, 16384);
        Assert.Equal(5535 - 49151, window.Available);
        Assert.Equal(0, window.Take(100));
        Assert.False(window.TryConsume(1));
        window.Credit(50000, 1);
        Assert.Equal(5535 - 49151 + 50000, window.Available);
    }

    [Fact]
    public void ApplyInitialWindowSizeChange_ToZeroFromMax_MostNegative()
    {
        var window = new Http2FlowWindow(Max);
        window.Take(Max);
        window.ApplyInitialWindowSizeChange(Max, 0);
        Assert.Equal(-Max, window.Available);
        window.ApplyInitialWindowSizeChange(0, Max);
        Assert.Equal(0, window.Available);
    }

    [Fact]
    public void ApplyInitialWindowSizeChange_GrowPastMax_ConnectionFlowControlError()
    {
        var window = new Http2FlowWindow();
        window.Credit(Max - 65535, 1);
        var ex = Assert.Throws<Http2ConnectionException>(() => window.ApplyInitialWindowSizeChange(65535, 65536));
        Assert.Equal(Http2ErrorCode.FlowControlError, ex.ErrorCode);
    }

    [Fact]
    public void ReceiveOnData_WithinWindow_Accounted()
    {
        var window = new Http2ReceiveWindow(100);
        window.OnData(60, 1);
        window.OnData(40, 1);
        Assert.Equal(0, window.Available);
    }

    [Fact]
    public void ReceiveOnData_PastWindow_FlowControlErrorOfTheRightKind()
    {
        var stream = new Http2ReceiveWindow(100);
        var streamEx = Assert.Throws<Http2StreamException>(() => stream.OnData(101, 3));
        Assert.Equal(Http2ErrorCode.FlowControlError, streamEx.ErrorCode);
        Assert.Equal(3u, streamEx.StreamId);
        var connection = new Http2ReceiveWindow(100);
        var connectionEx = Assert.Throws<Http2ConnectionException>(() => connection.OnData(101, 0));
        Assert.Equal(Http2ErrorCode.FlowControlError, connectionEx.ErrorCode);
    }

    [Fact]
    public void TryTakeUpdate_BelowHalfConsumed_NoUpdate_ThenOneUpdateForAllPending()
    {
        var window = new Http2ReceiveWindow(65535);
        window.OnData(40000, 1);
        window.OnConsumed(30000);
        Assert.False(window.TryTakeUpdate(out _));
        Assert.Equal(30000, window.Pending);
        window.OnConsumed(10000);
        Assert.True(window.TryTakeUpdate(out var increment));
        Assert.Equal(40000u, increment);
        Assert.Equal(65535, window.Available);
        Assert.Equal(0, window.Pending);
        Assert.False(window.TryTakeUpdate(out _));
    }

    [Fact]
    public void ReceiveApplyInitialWindowSizeChange_Shrink_AvailableMayGoNegative()
    {
        var window = new Http2ReceiveWindow(65535);
        window.OnData(60000, 1);
        window.ApplyInitialWindowSizeChange(16384);
        Assert.Equal(16384, window.Size);
        Assert.Equal(5535 - 49151, window.Available);
        Assert.Throws<Http2StreamException>(() => window.OnData(1, 1));
    }

    [Fact]
    public void GrowTo_LargerConnectionWindow_ReturnsIncrementToSend()
    {
        var window = new Http2ReceiveWindow();
        Assert.Equal((uint)(1048576 - 65535), window.GrowTo(1048576));
        Assert.Equal(1048576, window.Available);
        Assert.Equal(0u, window.GrowTo(1000));
        Assert.Equal((uint)(Max - 1048576), window.GrowTo(Max));
        Assert.Equal(Max, window.Available);
    }
}

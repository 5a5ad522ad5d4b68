using Proxy.Http.Http2;
using S = Proxy.Http.Http2.Http2StreamState;
using T = Proxy.Http.Http2.Http2FrameType;

namespace Proxy.Http.Tests.Http2;

public sealed class Http2StreamStatesTests
{
    [Theory]
    // idle
    [InlineData(S.Idle, T.Headers, false, S.Open)]
    [InlineData(S.Idle, T.Headers, true, S.HalfClosedRemote)]
    [InlineData(S.Idle, T.Priority, false, S.Idle)]
    // reserved (local)
    [InlineData(S.ReservedLocal, T.RstStream, false, S.Closed)]
    [InlineData(S.ReservedLocal, T.Priority, false, S.ReservedLocal)]
    [InlineData(S.ReservedLocal, T.WindowUpdate, false, S.ReservedLocal)]
    // reserved (remote)
    [InlineData(S.ReservedRemote, T.Headers, false, S.HalfClosedLocal)]
    [InlineData(S.ReservedRemote, T.Headers, true, S.Closed)]
    [InlineData(S.ReservedRemote, T.RstStream, false, S.Closed)]
    [InlineData(S.ReservedRemote, T.Priority, false, S.ReservedRemote)]
    // open
    [InlineData(S.Open, T.Data, false, S.Open)]
    [InlineData(S.Open, T.Data, true, S.HalfClosedRemote)]
    [InlineData(S.Open, T.Headers, true, S.HalfClosedRemote)]
    [InlineData(S.Open, T.Headers, false, S.Open)]
    [InlineData(S.Open, T.WindowUpdate, false, S.Open)]
    [InlineData(S.Open, T.Priority, false, S.Open)]
    [InlineData(S.Open, T.PushPromise, false, S.Open)]
    [InlineData(S.Open, T.Continuation, false, S.Open)]
    [InlineData(S.Open, T.RstStream, false, S.Closed)]
    // half-closed (local)
    [InlineData(S.HalfClosedLocal, T.Data, false, S.HalfClosedLocal)]
    [InlineData(S.HalfClosedLocal, T.Data, true, S.Closed)]
    [InlineData(S.HalfClosedLocal, T.Headers, true, S.Closed)]
    [InlineData(S.HalfClosedLocal, T.WindowUpdate, false, S.HalfClosedLocal)]
    [InlineData(S.HalfClosedLocal, T.RstStream, false, S.Closed)]
    // half-closed (remote)
    [InlineData(S.HalfClosedRemote, T.WindowUpdate, false, S.HalfClosedRemote)]
    [InlineData(S.HalfClosedRemote, T.Priority, false, S.HalfClosedRemote)]
    [InlineData(S.HalfClosedRemote, T.RstStream, false, S.Closed)]
    // closed
    [InlineData(S.Closed, T.Priority, false, S.Closed)]
    [InlineData(S.Closed, T.WindowUpdate, false, S.Closed)]
    [InlineData(S.Closed, T.RstStream, false, S.Closed)]
    public void Receive_LegalFrame_NextState(S state, T type, bool endStream, S expected)
    {
        Assert.Equal(expected, Http2StreamStates.Receive(state, 1, type, endStream));
    }

    [Theory]
    [InlineData(S.Idle, T.Data)]
    [InlineData(S.Idle, T.RstStream)]
    [InlineData(S.Idle, T.WindowUpdate)]
    [InlineData(S.Idle, T.Continuation)]
    [InlineData(S.Idle, T.PushPromise)]
    [InlineData(S.ReservedLocal, T.Data)]
    [InlineData(S.ReservedLocal, T.Headers)]
    [InlineData(S.ReservedRemote, T.Data)]
    [InlineData(S.ReservedRemote, T.WindowUpdate)]
    public void Receive_FrameIllegalInIdleOrReserved_ConnectionProtocolError(S state, T type)
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => Http2StreamStates.Receive(state, 1, type, false));
        Assert.Equal(Http2ErrorCode.ProtocolError, ex.ErrorCode);
    }

    [Theory]
    [InlineData(S.HalfClosedRemote, T.Data)]
    [InlineData(S.HalfClosedRemote, T.Headers)]
    [InlineData(S.HalfClosedRemote, T.Continuation)]
    [InlineData(S.Closed, T.Data)]
    [InlineData(S.Closed, T.Headers)]
    [InlineData(S.Closed, T.Continuation)]
    public void Receive_FrameAfterPeerClosed_StreamClosedStreamError(S state, T type)
    {
        var ex = Assert.Throws<Http2StreamException>(() => Http2StreamStates.Receive(state, 7, type, true));
        Assert.Equal(Http2ErrorCode.StreamClosed, ex.ErrorCode);
        Assert.Equal(7u, ex.StreamId);
    }

    [Theory]
    [InlineData(S.Idle, T.Headers, false, S.Open)]
    [InlineData(S.Idle, T.Headers, true, S.HalfClosedLocal)]
    [InlineData(S.Idle, T.Priority, false, S.Idle)]
    [InlineData(S.ReservedLocal, T.Headers, false, S.HalfClosedRemote)]
    [InlineData(S.ReservedLocal, T.Headers, true, S.Closed)]
    [InlineData(S.ReservedLocal, T.RstStream, false, S.Closed)]
    [InlineData(S.ReservedRemote, T.WindowUpdate, false, S.ReservedRemote)]
    [InlineData(S.ReservedRemote, T.RstStream, false, S.Closed)]
    [InlineData(S.Open, T.Data, false, S.Open)]
    [InlineData(S.Open, T.Data, true, S.HalfClosedLocal)]
    [InlineData(S.Open, T.Headers, true, S.HalfClosedLocal)]
    [InlineData(S.Open, T.RstStream, false, S.Closed)]
    [InlineData(S.HalfClosedLocal, T.WindowUpdate, false, S.HalfClosedLocal)]
    [InlineData(S.HalfClosedLocal, T.Priority, false, S.HalfClosedLocal)]
    [InlineData(S.HalfClosedLocal, T.RstStream, false, S.Closed)]
    [InlineData(S.HalfClosedRemote, T.Data, false, S.HalfClosedRemote)]
    [InlineData(S.HalfClosedRemote, T.Data, true, S.Closed)]
    [InlineData(S.HalfClosedRemote, T.Headers, true, S.Closed)]
    [InlineData(S.HalfClosedRemote, T.RstStream, false, S.Closed)]
    [InlineData(S.Closed, T.Priority, false, S.Closed)]
    [InlineData(S.Closed, T.RstStream, false, S.Closed)]
    public void Send_LegalFrame_NextState(S state, T type, bool endStream, S expected)
    {
        Assert.Equal(expected, Http2StreamStates.Send(state, type, endStream));
    }

    [Theory]
    [InlineData(S.Idle, T.Data)]
    [InlineData(S.Idle, T.RstStream)]
    [InlineData(S.ReservedLocal, T.Data)]
    [InlineData(S.ReservedRemote, T.Headers)]
    [InlineData(S.HalfClosedLocal, T.Data)]
    [InlineData(S.HalfClosedLocal, T.Headers)]
    [InlineData(S.Closed, T.Data)]
    [InlineData(S.Closed, T.WindowUpdate)]
    public void Send_FrameIllegalInState_InvalidOperation(S state, T type)
    {
        Assert.Throws<InvalidOperationException>(() => Http2StreamStates.Send(state, type, false));
    }

    [Fact]
    public void Promise_IdlePromisedStream_Reserved()
    {
        Assert.Equal(S.ReservedRemote, Http2StreamStates.ReceivePromise(S.Idle));
        Assert.Equal(S.ReservedLocal, Http2StreamStates.SendPromise(S.Idle));
        var ex = Assert.Throws<Http2ConnectionException>(() => Http2StreamStates.ReceivePromise(S.Open));
        Assert.Equal(Http2ErrorCode.ProtocolError, ex.ErrorCode);
        Assert.Throws<InvalidOperationException>(() => Http2StreamStates.SendPromise(S.Closed));
    }

    [Fact]
    public void Lifecycle_ClientRequestAndResponse_EndsClosedOnBothSides()
    {
        // Server view: request HEADERS+DATA(END_STREAM) in, response HEADERS+DATA(END_STREAM) out.
        var server = Http2StreamStates.Receive(S.Idle, 1, T.Headers, false);
        server = Http2StreamStates.Receive(server, 1, T.Data, true);
        Assert.Equal(S.HalfClosedRemote, server);
        server = Http2StreamStates.Send(server, T.Headers, false);
        server = Http2StreamStates.Send(server, T.Data, true);
        Assert.Equal(S.Closed, server);

        // Client view of the same exchange.
        var client = Http2StreamStates.Send(S.Idle, T.Headers, false);
        client = Http2StreamStates.Send(client, T.Data, true);
        Assert.Equal(S.HalfClosedLocal, client);
        client = Http2StreamStates.Receive(client, 1, T.Headers, false);
        client = Http2StreamStates.Receive(client, 1, T.Data, true);
        Assert.Equal(S.Closed, client);
    }

    [Theory]
    [InlineData(1u, 0u, true)]
    [InlineData(3u, 1u, true)]
    [InlineData(101u, 99u, true)]
    [InlineData(2u, 0u, false)]
    [InlineData(4u, 2u, false)]
    public void ValidateNewPeerStream_RightParityAndIncreasing_Accepted(uint streamId, uint last, bool peerIsClient)
    {
        Http2StreamIds.ValidateNewPeerStream(streamId, last, peerIsClient);
    }

    [Theory]
    [InlineData(2u, 0u, true)]
    [InlineData(0u, 0u, true)]
    [InlineData(3u, 0u, false)]
    [InlineData(1u, 1u, true)]
    [InlineData(1u, 3u, true)]
    [InlineData(2u, 4u, false)]
    public void ValidateNewPeerStream_WrongParityOrNotIncreasing_ConnectionProtocolError(uint streamId, uint last, bool peerIsClient)
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => Http2StreamIds.ValidateNewPeerStream(streamId, last, peerIsClient));
        Assert.Equal(Http2ErrorCode.ProtocolError, ex.ErrorCode);
    }

    [Fact]
    public void IsClientInitiated_OddIds_True()
    {
        Assert.True(Http2StreamIds.IsClientInitiated(1));
        Assert.True(Http2StreamIds.IsClientInitiated(0x7FFFFFFF));
        Assert.False(Http2StreamIds.IsClientInitiated(2));
    }
}

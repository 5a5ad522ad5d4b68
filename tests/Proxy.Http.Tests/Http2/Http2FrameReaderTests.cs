using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Tests.Http1;
using static Proxy.Http.Tests.Http2.FrameBytes;

namespace Proxy.Http.Tests.Http2;

public sealed class Http2FrameReaderTests
{
    private const byte UnknownFlag = 0x40;

    // ---- DATA ----

    [Fact]
    public void TryReadFrame_Data_PayloadIsTheDataAndFlagsDecoded()
    {
        AssertReads(Frame(Http2FrameType.Data, Http2Flags.EndStream, 3, "hello"u8.ToArray()), (frame, payload) =>
        {
            Assert.Equal(Http2FrameType.Data, frame.Type);
            Assert.Equal(3u, frame.StreamId);
            Assert.True(frame.EndStream);
            Assert.True(frame.IsKnownType);
            Assert.Equal(0, frame.PadLength);
            Assert.Equal("hello"u8.ToArray(), payload);
        });
    }

    [Fact]
    public void TryReadFrame_DataPadded_PaddingRemovedAndLengthCountsIt()
    {
        AssertReads(Frame(Http2FrameType.Data, Http2Flags.Padded, 1, [3, .. "abc"u8, 0, 0, 0]), (frame, payload) =>
        {
            Assert.Equal(3, frame.PadLength);
            Assert.Equal(7, frame.PayloadLength);
            Assert.False(frame.EndStream);
            Assert.Equal("abc"u8.ToArray(), payload);
        });
    }

    [Fact]
    public void TryReadFrame_DataPaddingFillsPayload_EmptyData()
    {
        AssertReads(Frame(Http2FrameType.Data, Http2Flags.Padded, 1, [2, 0, 0]), (frame, payload) =>
        {
            Assert.Equal(2, frame.PadLength);
            Assert.Empty(payload);
        });
    }

    [Fact]
    public void TryReadFrame_DataEmpty_EndStreamOnly()
    {
        AssertReads(Frame(Http2FrameType.Data, Http2Flags.EndStream, 1), (frame, payload) =>
        {
            Assert.True(frame.EndStream);
            Assert.Empty(payload);
        });
    }

    [Fact]
    public void TryReadFrame_DataOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Data, 0, 0, 1, 2), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_DataPadLengthEqualsPayload_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Data, Http2Flags.Padded, 1, [3, 0, 0]), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_DataPaddedWithoutPadLength_FrameSizeError() =>
        AssertConnectionError(Frame(Http2FrameType.Data, Http2Flags.Padded, 1), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_UnknownFlagsAndReservedBit_Ignored()
    {
        AssertReads(Frame(Http2FrameType.Data, UnknownFlag | 0x80 | 0x2, 0x80000005, 1), (frame, payload) =>
        {
            Assert.Equal(5u, frame.StreamId);
            Assert.Equal(UnknownFlag | 0x80 | 0x2, frame.Flags);
            Assert.False(frame.EndStream);
            Assert.Equal([1], payload);
        });
    }

    // ---- frame size ----

    [Fact]
    public void TryReadFrame_LargerThanMaxFrameSize_FrameSizeErrorOnTheHeaderAlone()
    {
        // Only the 9-byte header: the error must not wait for a payload the peer may never finish.
        AssertConnectionError(Raw((byte)Http2FrameType.Data, 0, 1, 16385, []), Http2ErrorCode.FrameSizeError);
        AssertConnectionError(Raw((byte)Http2FrameType.Headers, 0, 1, 0xFFFFFF, []), Http2ErrorCode.FrameSizeError, Http2Constants.MaxMaxFrameSize - 1);
    }

    [Fact]
    public void TryReadFrame_ExactlyMaxFrameSize_Read()
    {
        // Every-prefix checks on 16 KiB would be quadratic in the per-byte shape; the shapes below suffice here.
        var bytes = Frame(Http2FrameType.Data, 0, 1, new byte[16384]);
        foreach (var sequence in new[] { TestSequences.Single(bytes), TestSequences.Split(bytes, 4, 9, 10, 8000) })
        {
            var buffer = sequence;
            Assert.True(Http2FrameReader.TryReadFrame(ref buffer, new Http2Frame(), Http2Constants.DefaultMaxFrameSize, out var payload));
            Assert.Equal(16384, payload.Length);
            Assert.True(buffer.IsEmpty);
        }
    }

    [Fact]
    public void TryReadFrame_LargerMaxFrameSizeSetting_AllowsLargerFrames()
    {
        var bytes = Frame(Http2FrameType.Data, 0, 1, new byte[20000]);
        AssertConnectionError(bytes, Http2ErrorCode.FrameSizeError);
        var buffer = TestSequences.Single(bytes);
        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, new Http2Frame(), 32768, out var payload));
        Assert.Equal(20000, payload.Length);
    }

    // ---- HEADERS ----

    [Fact]
    public void TryReadFrame_Headers_FragmentAndFlags()
    {
        AssertReads(Frame(Http2FrameType.Headers, Http2Flags.EndHeaders | Http2Flags.EndStream, 1, 0x82, 0x86), (frame, payload) =>
        {
            Assert.Equal(Http2FrameType.Headers, frame.Type);
            Assert.True(frame.EndHeaders);
            Assert.True(frame.EndStream);
            Assert.False(frame.HasPriority);
            Assert.Equal([0x82, 0x86], payload);
        });
    }

    [Fact]
    public void TryReadFrame_HeadersPaddedWithPriority_FieldsDecodedAndFragmentIsolated()
    {
        byte[] payloadBytes = [2, 0x80, 0, 0, 1, 200, 0x82, 0x84, 0, 0];
        AssertReads(Frame(Http2FrameType.Headers, Http2Flags.Padded | Http2Flags.Priority | Http2Flags.EndHeaders, 3, payloadBytes), (frame, payload) =>
        {
            Assert.True(frame.HasPriority);
            Assert.True(frame.Exclusive);
            Assert.Equal(1u, frame.StreamDependency);
            Assert.Equal(200, frame.Weight);
            Assert.Equal(2, frame.PadLength);
            Assert.Equal([0x82, 0x84], payload);
        });
    }

    [Fact]
    public void TryReadFrame_HeadersPriorityOnly_FieldsDecoded()
    {
        AssertReads(Frame(Http2FrameType.Headers, Http2Flags.Priority, 5, 0, 0, 0, 3, 15, 0x82), (frame, payload) =>
        {
            Assert.False(frame.Exclusive);
            Assert.Equal(3u, frame.StreamDependency);
            Assert.Equal(15, frame.Weight);
            Assert.False(frame.EndHeaders);
            Assert.Equal([0x82], payload);
        });
    }

    [Fact]
    public void TryReadFrame_HeadersPaddingFillsTheRoom_EmptyFragment()
    {
        AssertReads(Frame(Http2FrameType.Headers, Http2Flags.Padded | Http2Flags.Priority, 1, 1, 0, 0, 0, 0, 1, 0), (frame, payload) =>
        {
            Assert.Equal(1, frame.PadLength);
            Assert.True(frame.HasPriority);
            Assert.Empty(payload);
        });
        AssertReads(Frame(Http2FrameType.PushPromise, Http2Flags.Padded, 1, 2, 0, 0, 0, 2, 0, 0), (frame, payload) =>
        {
            Assert.Equal(2u, frame.PromisedStreamId);
            Assert.Empty(payload);
        });
    }

    [Fact]
    public void TryReadFrame_HeadersOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Headers, Http2Flags.EndHeaders, 0, 0x82), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_HeadersPaddingLongerThanFragmentSpace_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Headers, Http2Flags.Padded | Http2Flags.Priority, 1, 2, 0, 0, 0, 0, 1, 0), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_HeadersTooShortForPriority_FrameSizeError() =>
        AssertConnectionError(Frame(Http2FrameType.Headers, Http2Flags.Priority, 1, 0, 0, 0, 0), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_HeadersDependingOnItself_ProtocolErrorForTheConnection() =>
        AssertConnectionError(Frame(Http2FrameType.Headers, Http2Flags.Priority | Http2Flags.EndHeaders, 7, 0, 0, 0, 7, 16), Http2ErrorCode.ProtocolError);

    // ---- PRIORITY ----

    [Fact]
    public void TryReadFrame_Priority_FieldsDecoded()
    {
        AssertReads(Frame(Http2FrameType.Priority, 0, 3, 0x80, 0, 0, 1, 255), (frame, _) =>
        {
            Assert.True(frame.HasPriority);
            Assert.True(frame.Exclusive);
            Assert.Equal(1u, frame.StreamDependency);
            Assert.Equal(255, frame.Weight);
        });
    }

    [Fact]
    public void TryReadFrame_PriorityOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Priority, 0, 0, 0, 0, 0, 1, 1), Http2ErrorCode.ProtocolError);

    [Theory]
    [InlineData(4)]
    [InlineData(6)]
    public void TryReadFrame_PriorityWrongLength_StreamFrameSizeErrorAndFrameConsumed(int length) =>
        AssertStreamError(Frame(Http2FrameType.Priority, 0, 3, new byte[length]), 3, Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_PriorityDependingOnItself_StreamProtocolError() =>
        AssertStreamError(Frame(Http2FrameType.Priority, 0, 3, 0, 0, 0, 3, 1), 3, Http2ErrorCode.ProtocolError);

    // ---- RST_STREAM ----

    [Fact]
    public void TryReadFrame_RstStream_ErrorCodeDecoded()
    {
        AssertReads(Frame(Http2FrameType.RstStream, 0, 5, U32(8)), (frame, _) => Assert.Equal(Http2ErrorCode.Cancel, frame.ErrorCode));
        AssertReads(Frame(Http2FrameType.RstStream, 0, 5, U32(0xABCD)), (frame, _) => Assert.Equal((Http2ErrorCode)0xABCD, frame.ErrorCode));
    }

    [Fact]
    public void TryReadFrame_RstStreamOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.RstStream, 0, 0, U32(8)), Http2ErrorCode.ProtocolError);

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public void TryReadFrame_RstStreamWrongLength_ConnectionFrameSizeError(int length) =>
        AssertConnectionError(Frame(Http2FrameType.RstStream, 0, 1, new byte[length]), Http2ErrorCode.FrameSizeError);

    // ---- SETTINGS ----

    [Fact]
    public void TryReadFrame_Settings_EntriesEnumeratedInOrderUnknownKept()
    {
        var payloadBytes = Concat(
            Setting(1, 8192),
            Setting(2, 0),
            Setting(3, 100),
            Setting(4, int.MaxValue),
            Setting(5, Http2Constants.MaxMaxFrameSize),
            Setting(6, 65536),
            Setting(0xFFFF, uint.MaxValue),
            Setting(5, Http2Constants.MinMaxFrameSize));
        AssertReads(Frame(Http2FrameType.Settings, 0, 0, payloadBytes), (frame, payload) =>
        {
            Assert.False(frame.IsAck);
            var settings = new List<Http2Setting>();
            foreach (var setting in new Http2SettingsEnumerator(new System.Buffers.ReadOnlySequence<byte>(payload)))
            {
                settings.Add(setting);
            }

            Assert.Equal(
                [
                    new(Http2SettingsParameter.HeaderTableSize, 8192),
                    new(Http2SettingsParameter.EnablePush, 0),
                    new(Http2SettingsParameter.MaxConcurrentStreams, 100),
                    new(Http2SettingsParameter.InitialWindowSize, int.MaxValue),
                    new(Http2SettingsParameter.MaxFrameSize, Http2Constants.MaxMaxFrameSize),
                    new(Http2SettingsParameter.MaxHeaderListSize, 65536),
                    new((Http2SettingsParameter)0xFFFF, uint.MaxValue),
                    new(Http2SettingsParameter.MaxFrameSize, Http2Constants.MinMaxFrameSize),
                ],
                settings);
        });
    }

    [Fact]
    public void SettingsEnumerator_EntriesSplitAcrossSegments_Read()
    {
        var payloadBytes = Concat(Setting(3, 100), Setting(4, 1 << 20));
        var settings = new List<Http2Setting>();
        foreach (var setting in new Http2SettingsEnumerator(TestSequences.SegmentPerByte(payloadBytes)))
        {
            settings.Add(setting);
        }

        Assert.Equal([new(Http2SettingsParameter.MaxConcurrentStreams, 100), new(Http2SettingsParameter.InitialWindowSize, 1 << 20)], settings);
    }

    [Fact]
    public void TryReadFrame_SettingsAck_Read()
    {
        AssertReads(Frame(Http2FrameType.Settings, Http2Flags.Ack, 0), (frame, payload) =>
        {
            Assert.True(frame.IsAck);
            Assert.Empty(payload);
        });
    }

    [Fact]
    public void TryReadFrame_SettingsEmpty_Read() =>
        AssertReads(Frame(Http2FrameType.Settings, 0, 0), (frame, payload) => Assert.Empty(payload));

    [Fact]
    public void TryReadFrame_SettingsAckWithPayload_FrameSizeError() =>
        AssertConnectionError(Frame(Http2FrameType.Settings, Http2Flags.Ack, 0, Setting(3, 1)), Http2ErrorCode.FrameSizeError);

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(13)]
    public void TryReadFrame_SettingsLengthNotMultipleOf6_FrameSizeError(int length) =>
        AssertConnectionError(Frame(Http2FrameType.Settings, 0, 0, new byte[length]), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_SettingsOnStream_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Settings, 0, 1, Setting(3, 1)), Http2ErrorCode.ProtocolError);

    [Theory]
    [InlineData(2, 2u, Http2ErrorCode.ProtocolError)]
    [InlineData(2, uint.MaxValue, Http2ErrorCode.ProtocolError)]
    [InlineData(4, 0x80000000u, Http2ErrorCode.FlowControlError)]
    [InlineData(4, uint.MaxValue, Http2ErrorCode.FlowControlError)]
    [InlineData(5, 16383u, Http2ErrorCode.ProtocolError)]
    [InlineData(5, 0u, Http2ErrorCode.ProtocolError)]
    [InlineData(5, 16777216u, Http2ErrorCode.ProtocolError)]
    [InlineData(8, 2u, Http2ErrorCode.ProtocolError)]
    [InlineData(9, 2u, Http2ErrorCode.ProtocolError)]
    public void TryReadFrame_SettingsValueOutOfRange_ConnectionError(ushort id, uint value, Http2ErrorCode code) =>
        AssertConnectionError(Frame(Http2FrameType.Settings, 0, 0, Concat(Setting(3, 10), Setting(id, value))), code);

    // ---- PUSH_PROMISE ----

    [Fact]
    public void TryReadFrame_PushPromise_PromisedStreamAndFragment()
    {
        AssertReads(Frame(Http2FrameType.PushPromise, Http2Flags.EndHeaders, 1, [0x80, 0, 0, 2, 0x82]), (frame, payload) =>
        {
            Assert.Equal(2u, frame.PromisedStreamId);
            Assert.True(frame.EndHeaders);
            Assert.Equal([0x82], payload);
        });
    }

    [Fact]
    public void TryReadFrame_PushPromisePadded_PaddingRemoved()
    {
        AssertReads(Frame(Http2FrameType.PushPromise, Http2Flags.Padded, 1, [1, 0, 0, 0, 4, 0x82, 0x87, 0]), (frame, payload) =>
        {
            Assert.Equal(4u, frame.PromisedStreamId);
            Assert.Equal(1, frame.PadLength);
            Assert.False(frame.EndHeaders);
            Assert.Equal([0x82, 0x87], payload);
        });
    }

    [Fact]
    public void TryReadFrame_PushPromiseOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.PushPromise, Http2Flags.EndHeaders, 0, U32(2)), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_PushPromiseTooShort_FrameSizeError() =>
        AssertConnectionError(Frame(Http2FrameType.PushPromise, Http2Flags.Padded, 1, 0, 0, 0, 2), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_PushPromisePaddingTooLong_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.PushPromise, Http2Flags.Padded, 1, 2, 0, 0, 0, 2, 0), Http2ErrorCode.ProtocolError);

    // ---- PING ----

    [Fact]
    public void TryReadFrame_Ping_DataAndAck()
    {
        AssertReads(Frame(Http2FrameType.Ping, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8), (frame, _) =>
        {
            Assert.False(frame.IsAck);
            Assert.Equal(0x0102030405060708UL, frame.PingData);
        });
        AssertReads(Frame(Http2FrameType.Ping, Http2Flags.Ack, 0, new byte[8]), (frame, _) => Assert.True(frame.IsAck));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(9)]
    public void TryReadFrame_PingWrongLength_FrameSizeError(int length) =>
        AssertConnectionError(Frame(Http2FrameType.Ping, 0, 0, new byte[length]), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_PingOnStream_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Ping, 0, 1, new byte[8]), Http2ErrorCode.ProtocolError);

    // ---- GOAWAY ----

    [Fact]
    public void TryReadFrame_GoAway_FieldsAndDebugData()
    {
        AssertReads(Frame(Http2FrameType.GoAway, 0, 0, [.. U32(0x80000007), .. U32(2), .. "bye"u8]), (frame, payload) =>
        {
            Assert.Equal(7u, frame.LastStreamId);
            Assert.Equal(Http2ErrorCode.InternalError, frame.ErrorCode);
            Assert.Equal("bye"u8.ToArray(), payload);
        });
    }

    [Fact]
    public void TryReadFrame_GoAwayTooShort_FrameSizeError() =>
        AssertConnectionError(Frame(Http2FrameType.GoAway, 0, 0, new byte[7]), Http2ErrorCode.FrameSizeError);

    [Fact]
    public void TryReadFrame_GoAwayOnStream_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.GoAway, 0, 3, new byte[8]), Http2ErrorCode.ProtocolError);

    // ---- WINDOW_UPDATE ----

    [Fact]
    public void TryReadFrame_WindowUpdate_IncrementWithReservedBitIgnored()
    {
        AssertReads(Frame(Http2FrameType.WindowUpdate, 0, 0, U32(0x80000000 | int.MaxValue)), (frame, _) =>
        {
            Assert.Equal(0u, frame.StreamId);
            Assert.Equal((uint)int.MaxValue, frame.WindowIncrement);
        });
        AssertReads(Frame(Http2FrameType.WindowUpdate, 0, 9, U32(1)), (frame, _) =>
        {
            Assert.Equal(9u, frame.StreamId);
            Assert.Equal(1u, frame.WindowIncrement);
        });
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    public void TryReadFrame_WindowUpdateWrongLength_ConnectionFrameSizeError(uint streamId)
    {
        AssertConnectionError(Frame(Http2FrameType.WindowUpdate, 0, streamId, 0, 0, 1), Http2ErrorCode.FrameSizeError);
        AssertConnectionError(Frame(Http2FrameType.WindowUpdate, 0, streamId, 0, 0, 0, 1, 0), Http2ErrorCode.FrameSizeError);
    }

    [Fact]
    public void TryReadFrame_WindowUpdateZeroOnConnection_ConnectionProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.WindowUpdate, 0, 0, U32(0)), Http2ErrorCode.ProtocolError);

    [Fact]
    public void TryReadFrame_WindowUpdateZeroOnStream_StreamProtocolErrorAndFrameConsumed()
    {
        AssertStreamError(Frame(Http2FrameType.WindowUpdate, 0, 5, U32(0)), 5, Http2ErrorCode.ProtocolError);
        AssertStreamError(Frame(Http2FrameType.WindowUpdate, 0, 5, U32(0x80000000)), 5, Http2ErrorCode.ProtocolError);
    }

    // ---- CONTINUATION and unknown types ----

    [Fact]
    public void TryReadFrame_Continuation_FragmentAndEndHeaders()
    {
        AssertReads(Frame(Http2FrameType.Continuation, Http2Flags.EndHeaders, 1, 0x84, 0x87), (frame, payload) =>
        {
            Assert.Equal(Http2FrameType.Continuation, frame.Type);
            Assert.True(frame.EndHeaders);
            Assert.Equal([0x84, 0x87], payload);
        });
    }

    [Fact]
    public void TryReadFrame_ContinuationOnStream0_ProtocolError() =>
        AssertConnectionError(Frame(Http2FrameType.Continuation, Http2Flags.EndHeaders, 0, 0x82), Http2ErrorCode.ProtocolError);

    [Theory]
    [InlineData(0xA, 0u)]
    [InlineData(0x10, 3u)]
    [InlineData(0xFF, 0u)]
    public void TryReadFrame_UnknownType_ReturnedWholeForTheConnectionToSkip(byte type, uint streamId)
    {
        AssertReads(Raw(type, 0xFF, streamId, 4, [1, 2, 3, 4]), (frame, payload) =>
        {
            Assert.False(frame.IsKnownType);
            Assert.Equal((Http2FrameType)type, frame.Type);
            Assert.Equal(streamId, frame.StreamId);
            Assert.False(frame.EndStream);
            Assert.False(frame.EndHeaders);
            Assert.Equal([1, 2, 3, 4], payload);
        });
    }

    // ---- sequences and preface ----

    [Fact]
    public void TryReadFrame_MixedSequence_AllFramesInOrderInEveryShape()
    {
        var bytes = Concat(
            Frame(Http2FrameType.Settings, 0, 0, Setting(4, 1 << 20)),
            Frame(Http2FrameType.WindowUpdate, 0, 0, U32(1000)),
            Frame(Http2FrameType.Headers, 0, 1, 0x82),
            Frame(Http2FrameType.Continuation, Http2Flags.EndHeaders, 1, 0x86),
            Frame(Http2FrameType.Data, Http2Flags.Padded, 1, 1, 9, 0),
            Raw(0x20, 0, 0, 1, [7]),
            Frame(Http2FrameType.Data, Http2Flags.EndStream, 1, 8),
            Frame(Http2FrameType.Ping, 0, 0, new byte[8]),
            Frame(Http2FrameType.GoAway, 0, 0, new byte[8]));
        var cuts = new[] { 5, 17, 40, 41, 60 };
        foreach (var sequence in new[] { TestSequences.Single(bytes), TestSequences.SegmentPerByte(bytes), TestSequences.Split(bytes, cuts) })
        {
            var (frames, unread) = ReadAll(sequence);
            Assert.Equal(0, unread);
            Assert.Equal(
                [Http2FrameType.Settings, Http2FrameType.WindowUpdate, Http2FrameType.Headers, Http2FrameType.Continuation, Http2FrameType.Data, (Http2FrameType)0x20, Http2FrameType.Data, Http2FrameType.Ping, Http2FrameType.GoAway],
                frames.Select(f => f.Type));
            Assert.Equal([9], frames[4].Payload);
            Assert.Equal([8], frames[6].Payload);
        }
    }

    [Fact]
    public void TryReadClientPreface_Preface_ConsumedExactly()
    {
        var bytes = Concat("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray(), Frame(Http2FrameType.Settings, 0, 0));
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            var buffer = sequence;
            Assert.True(Http2FrameReader.TryReadClientPreface(ref buffer), shape);
            Assert.Equal(9, buffer.Length);
        }

        for (var i = 0; i < 24; i++)
        {
            foreach (var (shape, sequence) in TestSequences.Shapes(bytes[..i]))
            {
                var buffer = sequence;
                Assert.False(Http2FrameReader.TryReadClientPreface(ref buffer), $"prefix {i} {shape}");
                Assert.Equal(sequence.Start, buffer.Start);
            }
        }
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n")]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r")]
    [InlineData("PRX")]
    public void TryReadClientPreface_OtherBytes_ProtocolErrorAsSoonAsVisible(string text)
    {
        foreach (var (_, sequence) in TestSequences.Shapes(TestSequences.Ascii(text)))
        {
            var ex = Assert.Throws<Http2ConnectionException>(() =>
            {
                var buffer = sequence;
                Http2FrameReader.TryReadClientPreface(ref buffer);
            });
            Assert.Equal(Http2ErrorCode.ProtocolError, ex.ErrorCode);
        }
    }
}

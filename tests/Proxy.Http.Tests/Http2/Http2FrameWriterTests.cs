using System.Buffers;
using System.IO.Pipelines;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Tests.Http1;
using static Proxy.Http.Tests.Http2.FrameBytes;

namespace Proxy.Http.Tests.Http2;

public sealed class Http2FrameWriterTests
{
    private static byte[] Written(Action<IBufferWriter<byte>> write)
    {
        var output = new ArrayBufferWriter<byte>();
        write(output);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>Writes, then reads back through the reader in both shapes and returns the single frame and its payload.</summary>
    private static (Http2Frame Frame, byte[] Payload) RoundTrip(Action<IBufferWriter<byte>> write)
    {
        var bytes = Written(write);
        (Http2Frame, byte[]) result = default;
        AssertReads(bytes, (frame, payload) => result = (frame, payload));
        return result;
    }

    [Fact]
    public void WriteClientPreface_ThenSettings_ReadBackByTheServerSide()
    {
        var bytes = Written(o =>
        {
            Http2FrameWriter.WriteClientPreface(o);
            Http2FrameWriter.WriteSettings(o, [new(Http2SettingsParameter.EnablePush, 0)]);
        });
        var buffer = TestSequences.Single(bytes);
        Assert.True(Http2FrameReader.TryReadClientPreface(ref buffer));
        var frame = new Http2Frame();
        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, frame, Http2Constants.DefaultMaxFrameSize, out _));
        Assert.Equal(Http2FrameType.Settings, frame.Type);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void WriteData_Span_RoundTrips()
    {
        var (frame, payload) = RoundTrip(o => Http2FrameWriter.WriteData(o, 3, "body"u8, endStream: true));
        Assert.Equal(Http2FrameType.Data, frame.Type);
        Assert.Equal(3u, frame.StreamId);
        Assert.True(frame.EndStream);
        Assert.Equal("body"u8.ToArray(), payload);
    }

    [Fact]
    public void WriteData_MultiSegmentSequence_RoundTripsAsOneFrame()
    {
        var data = TestSequences.SegmentPerByte("forwarded"u8.ToArray());
        var (frame, payload) = RoundTrip(o => Http2FrameWriter.WriteData(o, 1, data, endStream: false));
        Assert.False(frame.EndStream);
        Assert.Equal("forwarded"u8.ToArray(), payload);
    }

    [Fact]
    public void WriteData_Empty_EndStreamOnly()
    {
        Assert.Equal(Frame(Http2FrameType.Data, Http2Flags.EndStream, 1), Written(o => Http2FrameWriter.WriteData(o, 1, ReadOnlySpan<byte>.Empty, endStream: true)));
    }

    [Fact]
    public void WriteData_WriterWithSmallSpans_PayloadCopiedInPieces()
    {
        var output = new SmallSpanWriter(16);
        var data = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        Http2FrameWriter.WriteData(output, 1, data, endStream: false);
        Assert.Equal(Frame(Http2FrameType.Data, 0, 1, data), output.Written.ToArray());
    }

    [Fact]
    public void WriteData_Stream0_Refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteData(new ArrayBufferWriter<byte>(), 0, "x"u8, false));
    }

    [Fact]
    public void WriteHeaders_FitsInOneFrame_SingleHeadersWithEndHeaders()
    {
        var bytes = Written(o => Http2FrameWriter.WriteHeaders(o, 1, [0x82, 0x86, 0x84], endStream: true, Http2Constants.DefaultMaxFrameSize));
        Assert.Equal(Frame(Http2FrameType.Headers, Http2Flags.EndHeaders | Http2Flags.EndStream, 1, 0x82, 0x86, 0x84), bytes);
    }

    [Fact]
    public void WriteHeaders_EmptyBlock_SingleEmptyHeaders()
    {
        var bytes = Written(o => Http2FrameWriter.WriteHeaders(o, 5, [], endStream: false, 16));
        Assert.Equal(Frame(Http2FrameType.Headers, Http2Flags.EndHeaders, 5), bytes);
    }

    [Theory]
    [InlineData(100, 30, new[] { 30, 30, 30, 10 })]
    [InlineData(90, 30, new[] { 30, 30, 30 })]
    [InlineData(31, 30, new[] { 30, 1 })]
    [InlineData(5, 1, new[] { 1, 1, 1, 1, 1 })]
    public void WriteHeaders_LargerThanMaxFrameSize_SplitIntoContinuations(int blockLength, int maxFrameSize, int[] frameSizes)
    {
        var block = Enumerable.Range(0, blockLength).Select(i => (byte)i).ToArray();
        var bytes = Written(o => Http2FrameWriter.WriteHeaders(o, 7, block, endStream: true, (uint)maxFrameSize));
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            var (frames, unread) = ReadAll(sequence, (uint)maxFrameSize);
            Assert.Equal(0, unread);
            Assert.Equal(frameSizes, frames.Select(f => f.Payload.Length));
            Assert.Equal(Http2FrameType.Headers, frames[0].Type);
            Assert.Equal(Http2Flags.EndStream, frames[0].Flags & Http2Flags.EndStream);
            Assert.All(frames.Skip(1), f => Assert.Equal(Http2FrameType.Continuation, f.Type));
            Assert.All(frames, f => Assert.Equal(7u, f.StreamId));
            Assert.All(frames.Skip(1), f => Assert.Equal(0, f.Flags & Http2Flags.EndStream));
            Assert.All(frames.SkipLast(1), f => Assert.Equal(0, f.Flags & Http2Flags.EndHeaders));
            Assert.Equal(Http2Flags.EndHeaders, frames[^1].Flags & Http2Flags.EndHeaders);
            Assert.Equal(block, frames.SelectMany(f => f.Payload));

            var assembler = new Http2HeaderBlockAssembler();
            var frame = new Http2Frame();
            var buffer = sequence;
            var completed = new List<bool>();
            while (Http2FrameReader.TryReadFrame(ref buffer, frame, (uint)maxFrameSize, out var payload))
            {
                completed.Add(assembler.OnFrame(frame, payload.Length));
            }

            Assert.True(completed.Count == frameSizes.Length, shape);
            Assert.Equal(completed.Count - 1, completed.IndexOf(true));
            Assert.Equal(blockLength, assembler.BlockSize);
        }
    }

    [Fact]
    public void WritePriority_RoundTrips()
    {
        var (frame, _) = RoundTrip(o => Http2FrameWriter.WritePriority(o, 3, 1, exclusive: true, weight: 41));
        Assert.Equal(Http2FrameType.Priority, frame.Type);
        Assert.Equal(1u, frame.StreamDependency);
        Assert.True(frame.Exclusive);
        Assert.Equal(41, frame.Weight);
    }

    [Fact]
    public void WriteRstStream_RoundTrips()
    {
        var (frame, _) = RoundTrip(o => Http2FrameWriter.WriteRstStream(o, 9, Http2ErrorCode.RefusedStream));
        Assert.Equal(Http2FrameType.RstStream, frame.Type);
        Assert.Equal(9u, frame.StreamId);
        Assert.Equal(Http2ErrorCode.RefusedStream, frame.ErrorCode);
    }

    [Fact]
    public void WriteSettings_RoundTripsAndAckIsEmpty()
    {
        Http2Setting[] settings =
        [
            new(Http2SettingsParameter.EnablePush, 0),
            new(Http2SettingsParameter.MaxConcurrentStreams, 100),
            new(Http2SettingsParameter.InitialWindowSize, 1 << 20),
        ];
        var (frame, payload) = RoundTrip(o => Http2FrameWriter.WriteSettings(o, settings));
        Assert.False(frame.IsAck);
        var read = new List<Http2Setting>();
        foreach (var setting in new Http2SettingsEnumerator(new ReadOnlySequence<byte>(payload)))
        {
            read.Add(setting);
        }

        Assert.Equal(settings, read);
        Assert.Equal(Frame(Http2FrameType.Settings, Http2Flags.Ack, 0), Written(Http2FrameWriter.WriteSettingsAck));
    }

    [Fact]
    public void WritePing_RoundTripsWithAck()
    {
        var (frame, _) = RoundTrip(o => Http2FrameWriter.WritePing(o, 0x1122334455667788, ack: true));
        Assert.True(frame.IsAck);
        Assert.Equal(0x1122334455667788UL, frame.PingData);
        Assert.Equal(Frame(Http2FrameType.Ping, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88), Written(o => Http2FrameWriter.WritePing(o, 0x1122334455667788, ack: false)));
    }

    [Fact]
    public void WriteGoAway_RoundTripsWithDebugData()
    {
        var (frame, payload) = RoundTrip(o => Http2FrameWriter.WriteGoAway(o, 11, Http2ErrorCode.EnhanceYourCalm, "header_block_too_large"u8));
        Assert.Equal(11u, frame.LastStreamId);
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, frame.ErrorCode);
        Assert.Equal("header_block_too_large"u8.ToArray(), payload);
        var (plain, none) = RoundTrip(o => Http2FrameWriter.WriteGoAway(o, 0, Http2ErrorCode.NoError));
        Assert.Equal(Http2ErrorCode.NoError, plain.ErrorCode);
        Assert.Empty(none);
    }

    [Fact]
    public void WriteWindowUpdate_RoundTripsAndRefusesZeroOrTooLarge()
    {
        var (frame, _) = RoundTrip(o => Http2FrameWriter.WriteWindowUpdate(o, 0, int.MaxValue));
        Assert.Equal(0u, frame.StreamId);
        Assert.Equal((uint)int.MaxValue, frame.WindowIncrement);
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteWindowUpdate(new ArrayBufferWriter<byte>(), 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteWindowUpdate(new ArrayBufferWriter<byte>(), 1, 0x80000000));
    }

    [Fact]
    public void WriteFrameHeader_ReservedBitOrOversizedLength_Refused()
    {
        var span = new byte[9];
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteFrameHeader(span, 0, Http2FrameType.Data, 0, 0x80000001));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteFrameHeader(span, 1 << 24, Http2FrameType.Data, 0, 1));
    }

    [Fact]
    public async Task Writers_ThroughAPipe_ReadBackInOrder()
    {
        var pipe = new Pipe();
        Http2FrameWriter.WriteSettings(pipe.Writer, [new(Http2SettingsParameter.MaxFrameSize, 16384)]);
        Http2FrameWriter.WriteHeaders(pipe.Writer, 1, new byte[40000], endStream: false, Http2Constants.DefaultMaxFrameSize);
        Http2FrameWriter.WriteData(pipe.Writer, 1, new byte[16384], endStream: true);
        Http2FrameWriter.WriteWindowUpdate(pipe.Writer, 0, 65535);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        await pipe.Writer.CompleteAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

        var types = new List<Http2FrameType>();
        var frame = new Http2Frame();
        var assembler = new Http2HeaderBlockAssembler();
        while (true)
        {
            var result = await pipe.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            var rest = buffer;
            while (Http2FrameReader.TryReadFrame(ref rest, frame, Http2Constants.DefaultMaxFrameSize, out var payload))
            {
                assembler.OnFrame(frame, payload.Length);
                types.Add(frame.Type);
            }

            pipe.Reader.AdvanceTo(rest.Start, buffer.End);
            if (result.IsCompleted)
            {
                Assert.True(rest.IsEmpty);
                break;
            }
        }

        Assert.Equal(
            [Http2FrameType.Settings, Http2FrameType.Headers, Http2FrameType.Continuation, Http2FrameType.Continuation, Http2FrameType.Data, Http2FrameType.WindowUpdate],
            types);
        await pipe.Reader.CompleteAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>An IBufferWriter that never hands out more than asked for, or <c>chunk</c> bytes when asked for any size.</summary>
    private sealed class SmallSpanWriter(int chunk) : IBufferWriter<byte>
    {
        private readonly List<byte> _written = [];
        private byte[] _current = [];

        public IReadOnlyList<byte> Written => _written;

        public void Advance(int count) => _written.AddRange(_current.AsSpan(0, count).ToArray());

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            _current = new byte[Math.Max(sizeHint, chunk)];
            return _current;
        }

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
    [Theory]
    [InlineData(0)]
    [InlineData(13)]
    [InlineData(1024)]
    [InlineData(1025)]
    [InlineData(5000)]
    public void SmallFrames_OneAdvance_LargeOnesInPieces_SameBytesEitherWay(int length)
    {
        var payload = Enumerable.Range(0, length).Select(i => (byte)i).ToArray();
        var counting = new CountingWriter();
        Http2FrameWriter.WriteHeaders(counting, 3, payload, endStream: false, maxFrameSize: 16384);
        Http2FrameWriter.WriteData(counting, 3, payload, endStream: false);
        Http2FrameWriter.WriteData(counting, 3, new ReadOnlySequence<byte>(payload), endStream: true);

        var expected = Concat(
            Frame(Http2FrameType.Headers, Http2Flags.EndHeaders, 3, payload),
            Frame(Http2FrameType.Data, 0, 3, payload),
            Frame(Http2FrameType.Data, Http2Flags.EndStream, 3, payload));
        Assert.Equal(expected, counting.Written.WrittenSpan.ToArray());
        if (length <= 1024)
        {
            // Frame header and payload in one piece: one Advance per frame (a pipe takes its lock on each).
            Assert.Equal(3, counting.Advances);
        }
    }

    private sealed class CountingWriter : IBufferWriter<byte>
    {
        public ArrayBufferWriter<byte> Written { get; } = new();

        public int Advances { get; private set; }

        public void Advance(int count)
        {
            Advances++;
            Written.Advance(count);
        }

        public Memory<byte> GetMemory(int sizeHint = 0) => Written.GetMemory(sizeHint);

        public Span<byte> GetSpan(int sizeHint = 0) => Written.GetSpan(sizeHint);
    }
}

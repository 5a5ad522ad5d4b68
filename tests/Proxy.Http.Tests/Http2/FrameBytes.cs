using System.Buffers;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Tests.Http1;

namespace Proxy.Http.Tests.Http2;

/// <summary>Hand-built frames and the read contract every frame test checks (prefixes, both shapes, exact consumption).</summary>
internal static class FrameBytes
{
    public const uint DefaultMax = Http2Constants.DefaultMaxFrameSize;

    /// <summary>A frame whose header length is the payload length.</summary>
    public static byte[] Frame(Http2FrameType type, byte flags, uint streamId, params byte[] payload) =>
        Raw((byte)type, flags, streamId, payload.Length, payload);

    /// <summary>A frame with any type byte and a header length that may disagree with the payload.</summary>
    public static byte[] Raw(byte type, byte flags, uint streamId, int length, byte[] payload)
    {
        var bytes = new byte[9 + payload.Length];
        bytes[0] = (byte)(length >> 16);
        bytes[1] = (byte)(length >> 8);
        bytes[2] = (byte)length;
        bytes[3] = type;
        bytes[4] = flags;
        bytes[5] = (byte)(streamId >> 24);
        bytes[6] = (byte)(streamId >> 16);
        bytes[7] = (byte)(streamId >> 8);
        bytes[8] = (byte)streamId;
        payload.CopyTo(bytes, 9);
        return bytes;
    }

    public static byte[] U32(uint value) => [(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];

    public static byte[] Setting(ushort id, uint value) => [(byte)(id >> 8), (byte)id, .. U32(value)];

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    /// <summary>
    /// Checks the reader contract on <paramref name="bytes"/> (one frame): every strict prefix is incomplete and consumes
    /// nothing, in one segment and one segment per byte; the whole frame followed by 3 bytes of the next one is read in
    /// both shapes, consuming exactly the frame; <paramref name="check"/> sees the frame and a copy of the payload slice.
    /// </summary>
    public static void AssertReads(byte[] bytes, Action<Http2Frame, byte[]> check, uint maxFrameSize = DefaultMax)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            foreach (var (shape, sequence) in TestSequences.Shapes(bytes[..i]))
            {
                var frame = new Http2Frame();
                var buffer = sequence;
                Assert.False(Http2FrameReader.TryReadFrame(ref buffer, frame, maxFrameSize, out var payload), $"prefix {i} ({shape})");
                Assert.Equal(sequence.Start, buffer.Start);
                Assert.Equal(sequence.End, buffer.End);
                Assert.True(payload.IsEmpty);
                Assert.Equal(0, frame.PayloadLength);
            }
        }

        byte[] next = [0, 0, 4];
        foreach (var (shape, sequence) in TestSequences.Shapes([.. bytes, .. next]))
        {
            var frame = new Http2Frame();
            var buffer = sequence;
            Assert.True(Http2FrameReader.TryReadFrame(ref buffer, frame, maxFrameSize, out var payload), shape);
            Assert.Equal(next, buffer.ToArray());
            Assert.Equal(bytes.Length - 9, frame.PayloadLength);
            check(frame, payload.ToArray());
        }
    }

    /// <summary>Reading <paramref name="bytes"/> in both shapes is a connection error with <paramref name="code"/>.</summary>
    public static void AssertConnectionError(byte[] bytes, Http2ErrorCode code, uint maxFrameSize = DefaultMax)
    {
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            var ex = Assert.Throws<Http2ConnectionException>(() =>
            {
                var buffer = sequence;
                Http2FrameReader.TryReadFrame(ref buffer, new Http2Frame(), maxFrameSize, out _);
            });
            Assert.True(code == ex.ErrorCode, $"{shape}: expected {code}, got {ex.ErrorCode} ({ex.Reason})");
            Assert.False(string.IsNullOrEmpty(ex.Reason));
        }
    }

    /// <summary>Reading <paramref name="bytes"/> (one frame, followed by more) is a stream error and consumes exactly the frame.</summary>
    public static void AssertStreamError(byte[] bytes, uint streamId, Http2ErrorCode code)
    {
        byte[] next = [0, 0, 4];
        foreach (var (shape, sequence) in TestSequences.Shapes([.. bytes, .. next]))
        {
            var buffer = sequence;
            var frame = new Http2Frame();
            Http2StreamException? caught = null;
            try
            {
                Http2FrameReader.TryReadFrame(ref buffer, frame, DefaultMax, out _);
            }
            catch (Http2StreamException ex)
            {
                caught = ex;
            }

            Assert.NotNull(caught);
            Assert.True(code == caught.ErrorCode, $"{shape}: expected {code}, got {caught.ErrorCode} ({caught.Reason})");
            Assert.Equal(streamId, caught.StreamId);
            Assert.Equal(next, buffer.ToArray());
            Assert.Equal(streamId, frame.StreamId);
        }
    }

    /// <summary>Reads every frame of <paramref name="input"/>, returning (type, flags, stream, payload) of each and the unread rest.</summary>
    public static (List<(Http2FrameType Type, byte Flags, uint StreamId, byte[] Payload)> Frames, long Unread) ReadAll(ReadOnlySequence<byte> input, uint maxFrameSize = DefaultMax)
    {
        var frames = new List<(Http2FrameType, byte, uint, byte[])>();
        var frame = new Http2Frame();
        var buffer = input;
        while (Http2FrameReader.TryReadFrame(ref buffer, frame, maxFrameSize, out var payload))
        {
            frames.Add((frame.Type, frame.Flags, frame.StreamId, payload.ToArray()));
        }

        return (frames, buffer.Length);
    }
}

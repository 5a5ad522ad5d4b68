using System.Buffers;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;
using Proxy.Http.Tests.Http1;
using static Proxy.Http.Tests.Http2.FrameBytes;

namespace Proxy.Http.Tests.Http2;

/// <summary>Random damage to valid frame streams: the reader may only read, wait, or refuse with an HTTP/2 error, never crash or misconsume.</summary>
public sealed class Http2FrameMutationTests
{
    private static byte[] ValidStream()
    {
        var output = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteSettings(output, [new(Http2SettingsParameter.InitialWindowSize, 1 << 20), new(Http2SettingsParameter.MaxFrameSize, 20000)]);
        Http2FrameWriter.WriteWindowUpdate(output, 0, 1000);
        Http2FrameWriter.WriteHeaders(output, 1, new byte[50], endStream: false, 20);
        output.Write(Frame(Http2FrameType.Data, Http2Flags.Padded, 1, 2, 7, 7, 0, 0));
        output.Write(Frame(Http2FrameType.Headers, Http2Flags.Priority | Http2Flags.EndHeaders, 3, 0, 0, 0, 1, 16, 0x82));
        output.Write(Frame(Http2FrameType.PushPromise, Http2Flags.EndHeaders, 1, 0, 0, 0, 2, 0x82));
        Http2FrameWriter.WritePriority(output, 3, 1, false, 15);
        Http2FrameWriter.WriteRstStream(output, 3, Http2ErrorCode.Cancel);
        Http2FrameWriter.WritePing(output, 7, ack: false);
        Http2FrameWriter.WriteGoAway(output, 3, Http2ErrorCode.NoError, "x"u8);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>Reads frames until the input ends or an error; checks the consumption contract of every call.</summary>
    private static void ReadChecked(ReadOnlySequence<byte> input)
    {
        var frame = new Http2Frame();
        var assembler = new Http2HeaderBlockAssembler(maxBlockSize: 1000, maxFrames: 8);
        var buffer = input;
        while (true)
        {
            var before = buffer;
            try
            {
                if (!Http2FrameReader.TryReadFrame(ref buffer, frame, Http2Constants.DefaultMaxFrameSize, out var payload))
                {
                    Assert.Equal(before.Length, buffer.Length);
                    return;
                }

                Assert.Equal(before.Length - 9 - frame.PayloadLength, buffer.Length);
                Assert.True(payload.Length <= frame.PayloadLength);
                assembler.OnFrame(frame, payload.Length);
                if (frame.Type == Http2FrameType.Settings)
                {
                    foreach (var _ in new Http2SettingsEnumerator(payload))
                    {
                    }
                }
            }
            catch (Http2ConnectionException)
            {
                return;
            }
            catch (Http2StreamException)
            {
                // The frame was consumed: reading goes on, as a connection would after RST_STREAM.
                Assert.Equal(before.Length - 9 - frame.PayloadLength, buffer.Length);
            }
        }
    }

    [Fact]
    public void TryReadFrame_RandomlyDamagedStreams_ReadWaitOrRefuseOnly()
    {
        var original = ValidStream();
        ReadChecked(TestSequences.Single(original));
        var random = new Random(20261126);
        for (var round = 0; round < 3000; round++)
        {
            var bytes = (byte[])original.Clone();
            var damage = 1 + random.Next(4);
            for (var i = 0; i < damage; i++)
            {
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            }

            var length = random.Next(bytes.Length + 1);
            ReadChecked(TestSequences.Single(bytes[..length]));
            if (round % 10 == 0)
            {
                ReadChecked(TestSequences.SegmentPerByte(bytes[..length]));
            }
        }
    }

    [Fact]
    public void TryReadFrame_RandomBytes_ReadWaitOrRefuseOnly()
    {
        var random = new Random(11262026);
        for (var round = 0; round < 2000; round++)
        {
            var bytes = new byte[random.Next(64)];
            random.NextBytes(bytes);
            // Small lengths, so that whole frames are common rather than everything waiting for a 16 MiB payload.
            if (bytes.Length >= 3)
            {
                bytes[0] = 0;
                bytes[1] = 0;
                bytes[2] = (byte)random.Next(24);
            }

            ReadChecked(TestSequences.Split(bytes, bytes.Length / 2));
        }
    }

    [Fact]
    public void ReadAndWrite_AfterWarmUp_AllocateNothing()
    {
        var input = TestSequences.Split(ValidStream(), 5, 30, 31, 100);
        var frame = new Http2Frame();
        var assembler = new Http2HeaderBlockAssembler();
        var output = new ArrayBufferWriter<byte>(64 * 1024);
        var block = new byte[100];
        var data = new byte[5000];
        void Run()
        {
            var buffer = input;
            assembler.Reset();
            while (Http2FrameReader.TryReadFrame(ref buffer, frame, Http2Constants.DefaultMaxFrameSize, out var payload))
            {
                assembler.OnFrame(frame, payload.Length);
            }

            output.ResetWrittenCount();
            Http2FrameWriter.WriteHeaders(output, 1, block, endStream: false, 30);
            Http2FrameWriter.WriteData(output, 1, data, endStream: true);
            Http2FrameWriter.WriteData(output, 1, input, endStream: true);
            Http2FrameWriter.WriteWindowUpdate(output, 0, 100);
            Http2FrameWriter.WriteRstStream(output, 1, Http2ErrorCode.Cancel);
            Http2FrameWriter.WriteSettingsAck(output);
            Http2FrameWriter.WritePing(output, 1, ack: true);
            Http2FrameWriter.WriteGoAway(output, 1, Http2ErrorCode.NoError, "bye"u8);
        }

        Run();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Run();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

using System.Buffers;
using BenchmarkDotNet.Attributes;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;

namespace Proxy.Bench.Micro;

/// <summary>
/// HTTP/2 frame codec hot paths: reading a buffer of mixed frames (as one segment, and split across segments so
/// frame headers and fixed fields straddle them) through the reader and the CONTINUATION tracker, and writing the
/// frames a forwarded request produces (HEADERS split into CONTINUATION, DATA, WINDOW_UPDATE). Every operation must
/// show 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class Http2FrameBenchmarks
{
    private readonly Http2Frame _frame = new();
    private readonly Http2HeaderBlockAssembler _assembler = new();
    private readonly ArrayBufferWriter<byte> _output = new(64 * 1024);
    private readonly byte[] _headerBlock = new byte[300];
    private readonly byte[] _data = new byte[8192];
    private ReadOnlySequence<byte> _dataSequence;
    private ReadOnlySequence<byte> _mixedSingle;
    private ReadOnlySequence<byte> _mixedMulti;

    [GlobalSetup]
    public void Setup()
    {
        var output = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteSettings(output, [new(Http2SettingsParameter.MaxConcurrentStreams, 100), new(Http2SettingsParameter.InitialWindowSize, 1 << 20)]);
        Http2FrameWriter.WriteWindowUpdate(output, 0, 1 << 20);
        for (uint stream = 1; stream <= 7; stream += 2)
        {
            Http2FrameWriter.WriteHeaders(output, stream, _headerBlock, endStream: false, maxFrameSize: 128);
            Http2FrameWriter.WriteData(output, stream, _data.AsSpan(0, 1000), endStream: false);
            Http2FrameWriter.WriteData(output, stream, _data.AsSpan(0, 500), endStream: true);
            Http2FrameWriter.WriteWindowUpdate(output, stream, 1500);
        }

        Http2FrameWriter.WritePing(output, 42, ack: false);
        Http2FrameWriter.WriteRstStream(output, 5, Http2ErrorCode.Cancel);
        Http2FrameWriter.WriteSettingsAck(output);
        var bytes = output.WrittenSpan.ToArray();
        _mixedSingle = new ReadOnlySequence<byte>(bytes);
        _mixedMulti = Split(bytes, 4093);
        _dataSequence = Split(_data, 2000);
    }

    [Benchmark]
    public int ReadMixedSingleSegment() => ReadAll(_mixedSingle);

    [Benchmark]
    public int ReadMixedMultiSegment() => ReadAll(_mixedMulti);

    [Benchmark]
    public long WriteHeadersWithContinuation()
    {
        _output.ResetWrittenCount();
        Http2FrameWriter.WriteHeaders(_output, 1, _headerBlock, endStream: false, maxFrameSize: 128);
        return _output.WrittenCount;
    }

    [Benchmark]
    public long WriteData()
    {
        _output.ResetWrittenCount();
        Http2FrameWriter.WriteData(_output, 1, _data, endStream: true);
        return _output.WrittenCount;
    }

    [Benchmark]
    public long WriteDataFromSequence()
    {
        _output.ResetWrittenCount();
        Http2FrameWriter.WriteData(_output, 1, _dataSequence, endStream: false);
        return _output.WrittenCount;
    }

    [Benchmark]
    public long WriteWindowUpdate()
    {
        _output.ResetWrittenCount();
        Http2FrameWriter.WriteWindowUpdate(_output, 1, 65535);
        return _output.WrittenCount;
    }

    private int ReadAll(ReadOnlySequence<byte> input)
    {
        var count = 0;
        var rest = input;
        while (Http2FrameReader.TryReadFrame(ref rest, _frame, Http2Constants.DefaultMaxFrameSize, out var payload))
        {
            _assembler.OnFrame(_frame, payload.Length);
            if (_frame.Type == Http2FrameType.Settings)
            {
                foreach (var setting in new Http2SettingsEnumerator(payload))
                {
                    count += (int)setting.Value & 1;
                }
            }

            count++;
        }

        return count;
    }

    /// <summary>Splits into segments of <paramref name="size"/> bytes (an odd size, so frame headers straddle boundaries).</summary>
    private static ReadOnlySequence<byte> Split(byte[] bytes, int size)
    {
        Segment? first = null;
        Segment? last = null;
        for (var start = 0; start < bytes.Length; start += size)
        {
            var piece = bytes.AsMemory(start, Math.Min(size, bytes.Length - start));
            if (last is null)
            {
                first = last = new Segment(piece, 0);
            }
            else
            {
                last = last.Append(piece);
            }
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

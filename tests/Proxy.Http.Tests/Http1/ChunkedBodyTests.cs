using System.Buffers;
using System.IO.Pipelines;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public sealed class ChunkedBodyTests
{
    private const string Body =
        "5;name=value;flag\r\nhello\r\n" +
        "6;q=\"a \\\"quoted\\\" ; value\"\r\n world\r\n" +
        "000\r\n" +
        "X-Checksum: abc\r\nX-Other:  v \r\n\r\n";

    private static (string Data, string Trailers, List<(string, string)> TrailerFields) DecodeAll(ReadOnlySequence<byte> input, Http1ParserOptions? options = null)
    {
        var reader = new ChunkedBodyReader(options);
        reader.Reset();
        var data = new List<byte>();
        var rest = input;
        while (true)
        {
            var result = reader.Read(rest, out var chunk, out var consumed);
            if (result == ChunkedReadResult.Completed)
            {
                var fields = new List<(string, string)>();
                for (var i = 0; i < reader.Trailers.Count; i++)
                {
                    fields.Add((TestSequences.Text(reader.Trailers.GetName(i)), TestSequences.Text(reader.Trailers.GetValue(i))));
                }

                Assert.True(reader.IsComplete);
                Assert.Equal(data.Count, reader.BytesRead);
                return (TestSequences.Text(data.ToArray()), TestSequences.Text(chunk), fields);
            }

            Assert.True(result == ChunkedReadResult.Data, $"unexpected {result}");
            Assert.False(chunk.IsEmpty);
            data.AddRange(chunk.ToArray());
            rest = rest.Slice(consumed);
        }
    }

    [Fact]
    public void Read_ExtensionsAndTrailers_YieldsPayloadAndTrailerFieldsInBothShapes()
    {
        var bytes = TestSequences.Ascii(Body + "NEXT");
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            var (data, trailers, fields) = DecodeAll(sequence);
            Assert.True(data == "hello world", shape);
            Assert.Equal("X-Checksum: abc\r\nX-Other:  v \r\n", trailers);
            Assert.Equal([("X-Checksum", "abc"), ("X-Other", "v")], fields);
        }
    }

    [Fact]
    public void Read_Completed_ConsumedStopsExactlyAtTheNextMessage()
    {
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii("3\r\nabc\r\n0\r\n\r\nGET /next")))
        {
            var reader = new ChunkedBodyReader();
            reader.Reset();
            var rest = sequence;
            while (true)
            {
                var result = reader.Read(rest, out _, out var consumed);
                rest = rest.Slice(consumed);
                if (result == ChunkedReadResult.Completed)
                {
                    break;
                }
            }

            Assert.True(TestSequences.Text(rest) == "GET /next", shape);
            Assert.Equal(ChunkedReadResult.Completed, reader.Read(rest, out var none, out var after));
            Assert.True(none.IsEmpty);
            Assert.Equal(rest.Start, after);
        }
    }

    [Fact]
    public void Read_FedOneByteAtATimeLikeAPipe_ResumesAcrossReads()
    {
        // Simulates PipeReader: unconsumed bytes stay, one new byte arrives per read.
        var bytes = TestSequences.Ascii(Body);
        var reader = new ChunkedBodyReader();
        reader.Reset();
        var pending = new List<byte>();
        var data = new List<byte>();
        var completed = false;
        foreach (var b in bytes)
        {
            Assert.False(completed);
            pending.Add(b);
            while (true)
            {
                var buffer = TestSequences.SegmentPerByte(pending.ToArray());
                var result = reader.Read(buffer, out var chunk, out var consumed);
                if (result == ChunkedReadResult.Data)
                {
                    data.AddRange(chunk.ToArray());
                }

                var used = (int)buffer.Slice(0, consumed).Length;
                pending.RemoveRange(0, used);
                if (result == ChunkedReadResult.Completed)
                {
                    completed = true;
                    break;
                }

                if (result == ChunkedReadResult.NeedMoreData)
                {
                    break;
                }
            }
        }

        Assert.True(completed);
        Assert.Empty(pending);
        Assert.Equal("hello world", TestSequences.Text(data.ToArray()));
    }

    [Fact]
    public async Task Read_OverARealPipe_StreamsLargeBodyWithoutBufferingIt()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024));
        const int Chunks = 200;
        const int ChunkSize = 10_000;
        var writeTask = Task.Run(async () =>
        {
            var payload = new byte[ChunkSize];
            for (var i = 0; i < Chunks; i++)
            {
                payload.AsSpan().Fill((byte)('a' + (i % 26)));
                ChunkedBodyWriter.WriteChunk(pipe.Writer, payload);
                await pipe.Writer.FlushAsync();
            }

            ChunkedBodyWriter.WriteLastChunk(pipe.Writer);
            await pipe.Writer.CompleteAsync();
        });

        var reader = new ChunkedBodyReader();
        reader.Reset();
        long total = 0;
        var checksum = 0L;
        while (!reader.IsComplete)
        {
            var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = read.Buffer;
            var result = reader.Read(buffer, out var data, out var consumed);
            foreach (var segment in data)
            {
                total += segment.Length;
                foreach (var b in segment.Span)
                {
                    checksum += b;
                }
            }

            pipe.Reader.AdvanceTo(consumed, result == ChunkedReadResult.NeedMoreData ? buffer.End : consumed);
            Assert.False(read.IsCompleted && result == ChunkedReadResult.NeedMoreData, "pipe ended before the last chunk");
        }

        await writeTask.WaitAsync(TimeSpan.FromSeconds(10));
        var expected = 0L;
        for (var i = 0; i < Chunks; i++)
        {
            expected += ('a' + (i % 26)) * (long)ChunkSize;
        }

        Assert.Equal((long)Chunks * ChunkSize, total);
        Assert.Equal(expected, checksum);
    }

    [Theory]
    [InlineData("5;\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkExtension)]
    [InlineData("5;=x\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkExtension)]
    [InlineData("5;a=\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkExtension)]
    [InlineData("5;a=\"x\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkExtension)]
    [InlineData("5;a b\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkExtension)]
    [InlineData("5 ;a\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkSize)]
    [InlineData("5\r\r\nhello\r\n0\r\n\r\n", Http1ParseError.BareCr)]
    [InlineData("5\nhello\r\n0\r\n\r\n", Http1ParseError.BareLf)]
    [InlineData("5\r\nhello\r\n0\r\nX : y\r\n\r\n", Http1ParseError.SpaceBeforeColon)]
    [InlineData("5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n", Http1ParseError.ObsFold)]
    [InlineData("5\r\nhello\r\n0\r\nX: y\n\r\n", Http1ParseError.BareLf)]
    [InlineData("5\r\nhello\r\n0\r\n\n", Http1ParseError.BareLf)]
    [InlineData("5\r\nhelloXY", Http1ParseError.InvalidChunkTerminator)]
    [InlineData("5\r\nhello\rX", Http1ParseError.BareCr)]
    [InlineData("g\r\n", Http1ParseError.InvalidChunkSize)]
    public void Read_MalformedBody_Refused(string body, Http1ParseError error)
    {
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(body)))
        {
            var e = Assert.Throws<Http1ParseException>(() => DecodeAll(sequence));
            Assert.True(error == e.Error, $"{shape}: {e.Error}");
        }
    }

    [Fact]
    public void Read_LargestChunkSize_AcceptedThenWaitsForData()
    {
        var reader = new ChunkedBodyReader();
        reader.Reset();
        var bytes = TestSequences.Ascii("7fffffffffffffff\r\nab");
        Assert.Equal(ChunkedReadResult.Data, reader.Read(new ReadOnlySequence<byte>(bytes), out var data, out _));
        Assert.Equal(2, data.Length);
    }

    [Fact]
    public void Read_SizeLineOverLimit_Refused()
    {
        var options = Http1ParserOptions.Default with { MaxChunkLineBytes = 16 };
        var ok = TestSequences.Ascii("1;abcdefghijklmn\r\nx\r\n0\r\n\r\n");
        Assert.Equal("x", DecodeAll(new ReadOnlySequence<byte>(ok), options).Data);
        var tooLong = TestSequences.Ascii("1;abcdefghijklmno\r\nx\r\n0\r\n\r\n");
        var e = Assert.Throws<Http1ParseException>(() => DecodeAll(new ReadOnlySequence<byte>(tooLong), options));
        Assert.Equal(Http1ParseError.ChunkLineTooLong, e.Error);
        var endless = TestSequences.Ascii("1;" + new string('a', 100));
        e = Assert.Throws<Http1ParseException>(() => DecodeAll(new ReadOnlySequence<byte>(endless), options));
        Assert.Equal(Http1ParseError.ChunkLineTooLong, e.Error);
    }

    [Fact]
    public void Read_TrailersOverLimit_Refused431()
    {
        var options = Http1ParserOptions.Default with { MaxTrailerBytes = 32 };
        var body = "0\r\nX-A: " + new string('v', 40) + "\r\n\r\n";
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(body)))
        {
            var e = Assert.Throws<Http1ParseException>(() => DecodeAll(sequence, options));
            Assert.True(e.Error == Http1ParseError.TrailerTooLarge, shape);
            Assert.Equal(431, e.StatusCode);
        }
    }

    [Fact]
    public void Writer_RoundTripsThroughReader()
    {
        var writer = new ArrayBufferWriter<byte>();
        ChunkedBodyWriter.WriteChunk(writer, "hello"u8);
        ChunkedBodyWriter.WriteChunk(writer, ReadOnlySpan<byte>.Empty);
        ChunkedBodyWriter.WriteChunk(writer, TestSequences.SegmentPerByte(new byte[26]));
        ChunkedBodyWriter.WriteLastChunk(writer, TestSequences.Single(TestSequences.Ascii("X-T: 1\r\n")));
        var text = TestSequences.Text(writer.WrittenSpan);
        Assert.Equal("5\r\nhello\r\n1a\r\n" + new string('\0', 26) + "\r\n0\r\nX-T: 1\r\n\r\n", text);
        var (data, _, fields) = DecodeAll(new ReadOnlySequence<byte>(writer.WrittenMemory));
        Assert.Equal(31, data.Length);
        Assert.Equal([("X-T", "1")], fields);
    }

    [Fact]
    public void Read_SteadyState_AllocatesNothing()
    {
        var bytes = TestSequences.Ascii(Body);
        var single = TestSequences.Single(bytes);
        var split = TestSequences.Split(bytes, 3, 30, 50);
        var reader = new ChunkedBodyReader();
        void Drain(ReadOnlySequence<byte> input)
        {
            reader.Reset();
            var rest = input;
            while (reader.Read(rest, out _, out var consumed) != ChunkedReadResult.Completed)
            {
                rest = rest.Slice(consumed);
            }
        }

        Drain(single);
        Drain(split);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 50; i++)
        {
            Drain(single);
            Drain(split);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ContentLengthReader_ReturnsOnlyTheBodyAcrossReads()
    {
        var reader = new ContentLengthBodyReader();
        reader.Reset(5);
        var first = reader.Read(TestSequences.Single(TestSequences.Ascii("abc")));
        Assert.Equal(3, first.Length);
        Assert.False(reader.IsComplete);
        var second = reader.Read(TestSequences.SegmentPerByte(TestSequences.Ascii("deGET /")));
        Assert.Equal("de", TestSequences.Text(second));
        Assert.True(reader.IsComplete);
        Assert.Equal(0, reader.Read(TestSequences.Single(TestSequences.Ascii("x"))).Length);
    }
}

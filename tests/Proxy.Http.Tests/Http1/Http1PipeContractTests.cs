using System.Buffers;
using System.IO.Pipelines;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>The parser contract exercised over a real Pipe, the way a connection handler uses it.</summary>
public sealed class Http1PipeContractTests
{
    [Fact]
    public async Task TryParse_RequestsTrickledThroughAPipe_ParsedWithAdvanceToContract()
    {
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: 16));
        var wire = TestSequences.Ascii(
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
            "GET /b HTTP/1.1\r\nHost: h\r\nX-Long: " + new string('x', 300) + "\r\n\r\n" +
            "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        var writer = Task.Run(async () =>
        {
            // Uneven pieces so heads and bodies straddle reads and segments.
            var sizes = new[] { 1, 7, 3, 29, 2, 64, 5 };
            var i = 0;
            for (var offset = 0; offset < wire.Length; i++)
            {
                var n = Math.Min(sizes[i % sizes.Length], wire.Length - offset);
                await pipe.Writer.WriteAsync(wire.AsMemory(offset, n));
                offset += n;
            }

            await pipe.Writer.CompleteAsync();
        });

        var parser = new Http1RequestHeadParser();
        using var head = new Http1RequestHead();
        var chunked = new ChunkedBodyReader();
        var lengthReader = new ContentLengthBodyReader();
        var targets = new List<string>();
        var bodies = new List<string>();
        var reader = pipe.Reader;
        while (true)
        {
            var read = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = read.Buffer;
            if (buffer.IsEmpty && read.IsCompleted)
            {
                break;
            }

            if (!parser.TryParse(buffer, head, out var consumed))
            {
                Assert.False(read.IsCompleted, "input ended inside a head");
                reader.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            targets.Add(TestSequences.Text(head.Target));
            reader.AdvanceTo(consumed);
            var body = new List<byte>();
            if (head.BodyKind == Http1BodyKind.ContentLength)
            {
                lengthReader.Reset(head.ContentLength);
                while (!lengthReader.IsComplete)
                {
                    read = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                    var data = lengthReader.Read(read.Buffer);
                    body.AddRange(data.ToArray());
                    reader.AdvanceTo(data.End);
                }
            }
            else if (head.BodyKind == Http1BodyKind.Chunked)
            {
                chunked.Reset();
                while (!chunked.IsComplete)
                {
                    read = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                    var result = chunked.Read(read.Buffer, out var data, out var used);
                    if (result == ChunkedReadResult.Data)
                    {
                        body.AddRange(data.ToArray());
                    }

                    reader.AdvanceTo(used, result == ChunkedReadResult.NeedMoreData ? read.Buffer.End : used);
                }
            }

            bodies.Add(TestSequences.Text(body.ToArray()));
        }

        await writer.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(["/a", "/b", "/c"], targets);
        Assert.Equal(["hello", "", "abc"], bodies);
    }

    [Fact]
    public void ParseErrors_EveryValue_HasAReasonAndAnHttpStatus()
    {
        var reasons = new HashSet<string>();
        foreach (var error in Enum.GetValues<Http1ParseError>())
        {
            var reason = Http1ParseErrors.Reason(error);
            Assert.NotEqual("invalid_message", reason);
            Assert.True(reasons.Add(reason), $"duplicate reason {reason}");
            Assert.Contains(Http1ParseErrors.StatusCode(error), new[] { 400, 414, 431, 501, 505 });
            var e = new Http1ParseException(error);
            Assert.Equal(reason, e.Message);
            Assert.Equal(error, e.Error);
        }
    }
}

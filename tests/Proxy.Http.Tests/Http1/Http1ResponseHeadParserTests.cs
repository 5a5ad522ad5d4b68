using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public sealed class Http1ResponseHeadParserTests
{
    private static Http1ResponseHead ParseOne(string text, Http1Method method = Http1Method.Get)
    {
        var bytes = TestSequences.Ascii(text);
        Http1ResponseHead? last = null;
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            last?.Dispose();
            last = new Http1ResponseHead();
            Assert.True(new Http1ResponseHeadParser().TryParse(sequence, method, last, out var consumed), shape);
            Assert.Equal(sequence.End, consumed);
        }

        return last!;
    }

    private static Http1ParseError ParseError(string text, Http1Method method = Http1Method.Get)
    {
        var bytes = TestSequences.Ascii(text);
        Http1ParseError? error = null;
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            using var head = new Http1ResponseHead();
            var e = Assert.Throws<Http1ParseException>(() => new Http1ResponseHeadParser().TryParse(sequence, method, head, out _));
            Assert.True(error is null || error == e.Error, shape);
            error = e.Error;
        }

        return error!.Value;
    }

    [Fact]
    public void TryParse_SmallResponse_ParsesStatusReasonHeadersAndLength()
    {
        using var head = ParseOne("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n");
        Assert.Equal(200, head.StatusCode);
        Assert.Equal("OK", TestSequences.Text(head.ReasonPhrase));
        Assert.Equal(Http1Version.Http11, head.Version);
        Assert.Equal(3, head.Headers.Count);
        Assert.Equal(Http1BodyKind.ContentLength, head.BodyKind);
        Assert.Equal(13, head.ContentLength);
        Assert.True(head.KeepAlive);
        Assert.False(head.IsInterim);
        Assert.False(head.SwitchesToTunnel);
        Assert.True(head.Headers.IsHopByHop(2));
    }

    [Fact]
    public void TryParse_EveryPrefix_ReturnsFalseAndConsumesNothing()
    {
        string[] valid =
        [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\n",
            "\r\nHTTP/1.0 404 Not Found\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "HTTP/1.1 204\r\n\r\n",
        ];
        var parser = new Http1ResponseHeadParser();
        using var head = new Http1ResponseHead();
        foreach (var text in valid)
        {
            var bytes = TestSequences.Ascii(text);
            for (var length = 0; length < bytes.Length; length++)
            {
                foreach (var (shape, sequence) in TestSequences.Shapes(bytes[..length]))
                {
                    Assert.False(parser.TryParse(sequence, Http1Method.Get, head, out var consumed), $"{shape} prefix {length} of {text}");
                    Assert.Equal(sequence.Start, consumed);
                }
            }

            foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
            {
                Assert.True(parser.TryParse(sequence, Http1Method.Get, head, out var consumed), shape);
                Assert.Equal(sequence.End, consumed);
            }
        }
    }

    [Theory]
    [InlineData("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", Http1Method.Get)]
    [InlineData("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Method.Get)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Http1Method.Head)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Method.Head)]
    [InlineData("HTTP/1.1 100 Continue\r\n\r\n", Http1Method.Post)]
    [InlineData("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", Http1Method.Get)]
    public void TryParse_ResponsesWithoutBody_BodyNoneAndKeptAlive(string text, Http1Method method)
    {
        using var head = ParseOne(text, method);
        Assert.Equal(Http1BodyKind.None, head.BodyKind);
        Assert.True(head.KeepAlive);
    }

    [Fact]
    public void TryParse_HeadResponse_KeepsDeclaredLengthForInformation()
    {
        using var head = ParseOne("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Http1Method.Head);
        Assert.Equal(10, head.ContentLength);
    }

    [Fact]
    public void TryParse_100ContinueThenFinal_InterimThenFinalOnOneConnection()
    {
        var text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(text)))
        {
            var result = Http1TestDriver.RunResponses(sequence, Http1ParserOptions.Default, Http1Method.Post);
            Assert.True(result.Outcome == DriverOutcome.EndOfInput, $"{shape}: {result}");
            Assert.Equal([100, 201], result.Messages.Select(m => m.Status));
            Assert.Equal("ok", TestSequences.Text(result.Messages[1].Body.ToArray()));
        }

        using var interim = ParseOne("HTTP/1.1 100 Continue\r\n\r\n");
        Assert.True(interim.IsInterim);
    }

    [Fact]
    public void TryParse_101_SwitchesToTunnelNotInterim()
    {
        using var head = ParseOne("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\n");
        Assert.True(head.SwitchesToTunnel);
        Assert.False(head.IsInterim);
        Assert.Equal(Http1BodyKind.None, head.BodyKind);
        Assert.Equal("websocket", TestSequences.Text(head.Upgrade));
    }

    [Fact]
    public void TryParse_2xxToConnect_SwitchesToTunnel()
    {
        using var head = ParseOne("HTTP/1.1 200 Connection Established\r\n\r\n", Http1Method.Connect);
        Assert.True(head.SwitchesToTunnel);
        Assert.Equal(Http1BodyKind.None, head.BodyKind);
    }

    [Fact]
    public void TryParse_407ToConnect_HasBodyNoTunnel()
    {
        using var head = ParseOne("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\n", Http1Method.Connect);
        Assert.False(head.SwitchesToTunnel);
        Assert.Equal(Http1BodyKind.ContentLength, head.BodyKind);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")]
    [InlineData("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")]
    public void TryParse_NoUsableLength_CloseDelimitedNotKeptAlive(string text)
    {
        using var head = ParseOne(text);
        Assert.Equal(Http1BodyKind.CloseDelimited, head.BodyKind);
        Assert.False(head.KeepAlive);
    }

    [Fact]
    public void TryParse_Http10WithKeepAliveAndLength_KeptAlive()
    {
        using var head = ParseOne("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        Assert.True(head.KeepAlive);
    }

    [Fact]
    public void TryParse_Chunked_Chunked()
    {
        using var head = ParseOne("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        Assert.Equal(Http1BodyKind.Chunked, head.BodyKind);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Http1ParseError.ContentLengthAndTransferEncoding)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", Http1ParseError.DuplicateContentLength)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Http1ParseError.UnsupportedTransferCoding)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Http1ParseError.InvalidTransferEncoding)]
    [InlineData("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Http1ParseError.TransferEncodingInHttp10)]
    [InlineData("HTTP/1.1 20 OK\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.1 2000 OK\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.1 099 Low\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.1 200\tOK\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.1 200 O\u0001K\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.1  200 OK\r\n\r\n", Http1ParseError.InvalidStatusLine)]
    [InlineData("HTTP/1.01 200 OK\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("HTTP/2 200 OK\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("HTTP/2.0 200 OK\r\n\r\n", Http1ParseError.UnsupportedVersion)]
    [InlineData("HTTP/1.1 200 OK\nX: y\r\n\r\n", Http1ParseError.BareLf)]
    [InlineData("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", Http1ParseError.SpaceBeforeColon)]
    [InlineData("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", Http1ParseError.ObsFold)]
    public void TryParse_MalformedResponse_Refused(string text, Http1ParseError error)
    {
        Assert.Equal(error, ParseError(text));
    }

    [Fact]
    public void TryParse_ReasonWithObsText_Accepted()
    {
        using var head = ParseOne("HTTP/1.1 500 Ori\u00ebntatieprobleem\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal(500, head.StatusCode);
        Assert.Equal(18, head.ReasonPhrase.Length);
    }

    [Fact]
    public void TryParse_SteadyState_AllocatesNothing()
    {
        var bytes = TestSequences.Ascii("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Thu, 26 Nov 2026 07:00:00 GMT\r\n\r\n");
        var single = TestSequences.Single(bytes);
        var multi = TestSequences.Split(bytes, 20, 50);
        var parser = new Http1ResponseHeadParser();
        using var head = new Http1ResponseHead();
        Assert.True(parser.TryParse(single, Http1Method.Get, head, out _));
        Assert.True(parser.TryParse(multi, Http1Method.Get, head, out _));
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            parser.TryParse(single, Http1Method.Get, head, out _);
            parser.TryParse(multi, Http1Method.Get, head, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

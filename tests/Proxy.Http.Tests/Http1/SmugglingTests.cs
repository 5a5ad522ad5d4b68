using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>
/// Each request-smuggling vector by name: the codec must refuse it (400-class, connection closed) in both
/// buffer shapes, with the named reason, so the proxy never forwards an ambiguous message.
/// </summary>
public sealed class SmugglingTests
{
    private static void AssertRefused(string text, Http1ParseError error, int status = 400)
    {
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(text)))
        {
            var result = Http1TestDriver.RunRequests(sequence, Http1ParserOptions.Default);
            Assert.True(result.Outcome == DriverOutcome.Rejected, $"{shape}: not refused: {result}");
            Assert.True(result.Error == error, $"{shape}: refused with {result.Error}, expected {error}");
        }

        Assert.Equal(status, Http1ParseErrors.StatusCode(error));
    }

    [Fact]
    public void ContentLengthThenTransferEncoding_RefusedClAndTe() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Http1ParseError.ContentLengthAndTransferEncoding);

    [Fact]
    public void TransferEncodingThenContentLength_RefusedClAndTe() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", Http1ParseError.ContentLengthAndTransferEncoding);

    [Fact]
    public void ContentLengthWithEmptyTransferEncoding_RefusedClAndTe() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n\r\nabcd", Http1ParseError.ContentLengthAndTransferEncoding);

    [Fact]
    public void DuplicateEqualContentLength_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", Http1ParseError.DuplicateContentLength);

    [Fact]
    public void DifferingContentLength_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\ncontent-length: 40\r\n\r\nabcd", Http1ParseError.DuplicateContentLength);

    [Theory]
    [InlineData("4, 4")]
    [InlineData("+4")]
    [InlineData("-1")]
    [InlineData("0x4")]
    [InlineData("4 4")]
    [InlineData("4;")]
    [InlineData("")]
    [InlineData("\u0664")]
    public void MalformedContentLength_Refused(string value) =>
        AssertRefused($"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\nabcd", Http1ParseError.InvalidContentLength);

    [Theory]
    [InlineData("9223372036854775808")]
    [InlineData("99999999999999999999999")]
    public void OverflowingContentLength_Refused(string value) =>
        AssertRefused($"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\n", Http1ParseError.ContentLengthOverflow);

    [Fact]
    public void LargestContentLength_Accepted()
    {
        var result = Http1TestDriver.RunRequests(TestSequences.Single(TestSequences.Ascii("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n")), Http1ParserOptions.Default);
        Assert.Equal(DriverOutcome.Truncated, result.Outcome);
    }

    [Theory]
    [InlineData("chunked, identity")]
    [InlineData("identity")]
    [InlineData("xchunked")]
    [InlineData("chunked;q=1")]
    [InlineData("\"chunked\"")]
    public void TransferEncodingNotEndingInChunked_Refused(string value) =>
        AssertRefused($"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n", Http1ParseError.ChunkedNotFinal);

    [Fact]
    public void ChunkedInSecondTransferEncodingFieldAfterUnknown_Refused501() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Http1ParseError.UnsupportedTransferCoding, 501);

    [Fact]
    public void ChunkedTwice_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", Http1ParseError.InvalidTransferEncoding);

    [Fact]
    public void EmptyTransferEncoding_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n", Http1ParseError.InvalidTransferEncoding);

    [Fact]
    public void TransferEncodingInHttp10_Refused() =>
        AssertRefused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Http1ParseError.TransferEncodingInHttp10);

    [Theory]
    [InlineData("Transfer-Encoding : chunked")]
    [InlineData("Content-Length\t: 4")]
    [InlineData("Host : h")]
    public void WhitespaceBeforeColon_Refused(string line) =>
        AssertRefused($"POST / HTTP/1.1\r\nHost: h\r\n{line}\r\n\r\n", Http1ParseError.SpaceBeforeColon);

    [Fact]
    public void ObsFoldContinuationLine_Refused() =>
        AssertRefused("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n", Http1ParseError.ObsFold);

    [Fact]
    public void WhitespaceBeforeFirstHeader_Refused() =>
        AssertRefused("GET / HTTP/1.1\r\n\tHost: h\r\n\r\n", Http1ParseError.ObsFold);

    [Fact]
    public void ObsFoldInIncompleteHead_RefusedAsSoonAsSeen() =>
        AssertRefused("GET / HTTP/1.1\r\nHost: h\r\n Transfer", Http1ParseError.ObsFold);

    [Theory]
    [InlineData("GET / HTTP/1.1\nHost: h\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\nContent-Length: 4\r\n\r\nabcd")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\n\n")]
    [InlineData("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")]
    public void BareLf_Refused(string text) => AssertRefused(text, Http1ParseError.BareLf);

    [Theory]
    [InlineData("GET / HTTP/1.1\rHost: h\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\n\rX: y\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n")]
    [InlineData("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\nX\r: y\r\n\r\n")]
    public void BareCr_Refused(string text) => AssertRefused(text, Http1ParseError.BareCr);

    [Theory]
    [InlineData("Fo@: x")]
    [InlineData("X\u0001Y: x")]
    [InlineData(": x")]
    [InlineData("H\u00e9ader: x")]
    [InlineData("X Y: x")]
    [InlineData("\"X\": x")]
    public void InvalidFieldNameToken_Refused(string line) =>
        AssertRefused($"GET / HTTP/1.1\r\nHost: h\r\n{line}\r\n\r\n", Http1ParseError.InvalidToken);

    [Theory]
    [InlineData("X: a\u0000b")]
    [InlineData("X: a\u007fb")]
    [InlineData("X: \u000c")]
    [InlineData("X: a\u001bb")]
    public void ControlByteInFieldValue_Refused(string line) =>
        AssertRefused($"GET / HTTP/1.1\r\nHost: h\r\n{line}\r\n\r\n", Http1ParseError.InvalidFieldValue);

    [Fact]
    public void HeaderLineWithoutColon_Refused() =>
        AssertRefused("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding chunked\r\n\r\n", Http1ParseError.MissingColon);

    [Theory]
    [InlineData("5 \r\nhello\r\n0\r\n\r\n")]
    [InlineData(" 5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("0x5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("-5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5\r\nhello\r\n\r\n")]
    public void InvalidChunkSize_Refused(string body) =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body, Http1ParseError.InvalidChunkSize);

    [Theory]
    [InlineData("10000000000000000")]
    [InlineData("8000000000000000")]
    [InlineData("fffffffffffffffff1")]
    public void OverflowingChunkSize_Refused(string size) =>
        AssertRefused($"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n", Http1ParseError.ChunkSizeOverflow);

    [Fact]
    public void ChunkDataLongerThanDeclared_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", Http1ParseError.InvalidChunkTerminator);

    [Fact]
    public void ChunkDataEndingInBareLf_Refused() =>
        AssertRefused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", Http1ParseError.BareLf);

    [Fact]
    public void RequestSmuggledInsideOversizedChunk_NeverSeenAsARequest()
    {
        // A front-end that ignored TE would see two requests; we see one chunked body and refuse nothing, but
        // the "inner" request is body data, not a request head.
        var text = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n\r\n0\r\n\r\n";
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(text)))
        {
            var result = Http1TestDriver.RunRequests(sequence, Http1ParserOptions.Default);
            Assert.True(result.Outcome == DriverOutcome.EndOfInput, $"{shape}: {result}");
            Assert.Single(result.Messages);
            Assert.Equal("GET /admin HTTP/1.1\r\nHost: h\r\n\r\n", TestSequences.Text(result.Messages[0].Body.ToArray()));
        }
    }
}

using System.Buffers;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public sealed class Http1RequestHeadParserTests
{
    private const string Browserish =
        "GET /index.html?q=1 HTTP/1.1\r\n" +
        "Host: example.com\r\n" +
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
        "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n" +
        "Accept-Encoding: gzip, deflate\r\n" +
        "Connection: keep-alive, X-Remove-Me\r\n" +
        "X-Remove-Me: 1\r\n" +
        "Keep-Alive: timeout=5\r\n" +
        "Cookie: a=b; c=d\r\n" +
        "\r\n";

    private static readonly string[] ValidRequests =
    [
        Browserish,
        "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X-Sum\r\n\r\n",
        "\r\n\r\nGET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /obs HTTP/1.1\r\nHost: h\r\nX-Latin: caf\u00e9\r\nEmpty:\r\nSpaces:   v  \r\n\r\n",
    ];

    private static Http1RequestHead ParseOne(string text, Http1ParserOptions? options = null) => ParseOne(TestSequences.Ascii(text), options);

    private static Http1RequestHead ParseOne(byte[] bytes, Http1ParserOptions? options = null)
    {
        var head = new Http1RequestHead();
        var sequence = TestSequences.Single(bytes);
        Assert.True(new Http1RequestHeadParser(options).TryParse(sequence, head, out var consumed));
        Assert.Equal(bytes.Length, sequence.Slice(0, consumed).Length);
        return head;
    }

    private static Http1ParseException ParseError(string text, Http1ParserOptions? options = null)
    {
        var bytes = TestSequences.Ascii(text);
        Http1ParseException? first = null;
        foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
        {
            using var head = new Http1RequestHead();
            var parser = new Http1RequestHeadParser(options);
            var e = Assert.Throws<Http1ParseException>(() => parser.TryParse(sequence, head, out _));
            if (first is not null)
            {
                Assert.True(first.Error == e.Error, $"{shape}: {e.Error} differs from single segment {first.Error}");
            }

            first ??= e;
        }

        return first!;
    }

    [Fact]
    public void TryParse_BrowserRequest_ParsesLineHeadersAndFacts()
    {
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(Browserish)))
        {
            using var head = new Http1RequestHead();
            Assert.True(new Http1RequestHeadParser().TryParse(sequence, head, out var consumed), shape);
            Assert.Equal(sequence.End, consumed);
            Assert.Equal(Http1Method.Get, head.Method);
            Assert.Equal("GET", TestSequences.Text(head.MethodBytes));
            Assert.Equal("/index.html?q=1", TestSequences.Text(head.Target));
            Assert.Equal(Http1TargetForm.Origin, head.TargetForm);
            Assert.Equal(Http1Version.Http11, head.Version);
            Assert.Equal(8, head.Headers.Count);
            Assert.Equal("User-Agent", TestSequences.Text(head.Headers.GetName(1)));
            Assert.Equal("Mozilla/5.0 (X11; Linux x86_64)", TestSequences.Text(head.Headers.GetValue(1)));
            Assert.True(head.HasHost);
            Assert.Equal("example.com", TestSequences.Text(head.Host));
            Assert.Equal(Http1BodyKind.None, head.BodyKind);
            Assert.Equal(-1, head.ContentLength);
            Assert.True(head.KeepAlive);
            Assert.False(head.IsUpgrade);
            Assert.False(head.ExpectContinue);
            Assert.Equal(Browserish.Length, head.HeadLength);
            Assert.True(head.Headers.TryGetValue("cOOkie"u8, out var cookie));
            Assert.Equal("a=b; c=d", TestSequences.Text(cookie));
        }
    }

    [Fact]
    public void TryParse_EveryPrefix_ReturnsFalseAndConsumesNothing()
    {
        var parser = new Http1RequestHeadParser();
        using var head = new Http1RequestHead();
        foreach (var text in ValidRequests)
        {
            var bytes = TestSequences.Ascii(text);
            for (var length = 0; length < bytes.Length; length++)
            {
                foreach (var (shape, sequence) in TestSequences.Shapes(bytes[..length]))
                {
                    Assert.False(parser.TryParse(sequence, head, out var consumed), $"{shape} prefix {length} of {text}");
                    Assert.Equal(sequence.Start, consumed);
                }
            }

            foreach (var (shape, sequence) in TestSequences.Shapes(bytes))
            {
                Assert.True(parser.TryParse(sequence, head, out var consumed), $"{shape} {text}");
                Assert.Equal(sequence.End, consumed);
            }
        }
    }

    [Fact]
    public void TryParse_SplitIntoTwoSegmentsAtEveryOffset_ParsesTheSame()
    {
        var parser = new Http1RequestHeadParser();
        using var reference = ParseOne(Browserish);
        var bytes = TestSequences.Ascii(Browserish);
        using var head = new Http1RequestHead();
        for (var cut = 1; cut < bytes.Length; cut++)
        {
            var sequence = TestSequences.Split(bytes, cut);
            Assert.True(parser.TryParse(sequence, head, out var consumed));
            Assert.Equal(sequence.End, consumed);
            Assert.Equal(TestSequences.Text(reference.Target), TestSequences.Text(head.Target));
            Assert.Equal(reference.Headers.Count, head.Headers.Count);
            for (var i = 0; i < head.Headers.Count; i++)
            {
                Assert.True(reference.Headers.GetName(i).SequenceEqual(head.Headers.GetName(i)));
                Assert.True(reference.Headers.GetValue(i).SequenceEqual(head.Headers.GetValue(i)));
                Assert.Equal(reference.Headers.IsHopByHop(i), head.Headers.IsHopByHop(i));
            }
        }
    }

    [Fact]
    public void TryParse_PipelinedRequests_ParsedOneAfterAnother()
    {
        var text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcDELETE /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        foreach (var (shape, sequence) in TestSequences.Shapes(TestSequences.Ascii(text)))
        {
            var result = Http1TestDriver.RunRequests(sequence, Http1ParserOptions.Default);
            Assert.True(result.Outcome == DriverOutcome.Closed, shape);
            Assert.Equal(0, result.UnreadBytes);
            Assert.Equal(["/1", "/2", "/3"], result.Messages.Select(m => m.Target));
            Assert.Equal(["GET", "POST", "DELETE"], result.Messages.Select(m => m.Method));
            Assert.Equal("abc", TestSequences.Text(result.Messages[1].Body.ToArray()));
            Assert.Equal([true, true, false], result.Messages.Select(m => m.KeepAlive));
        }
    }

    [Fact]
    public void TryParse_ReusedHead_HoldsNoStateFromThePreviousRequest()
    {
        var parser = new Http1RequestHeadParser();
        using var head = new Http1RequestHead();
        Assert.True(parser.TryParse(new ReadOnlySequence<byte>(TestSequences.Ascii(ValidRequests[7])), head, out _));
        Assert.True(head.IsUpgrade);
        Assert.True(parser.TryParse(new ReadOnlySequence<byte>(TestSequences.Ascii(ValidRequests[6])), head, out _));
        Assert.False(head.IsUpgrade);
        Assert.False(head.HasHost);
        Assert.Equal(0, head.Headers.Count);
        Assert.True(head.Upgrade.IsEmpty);
        Assert.Equal(Http1Version.Http10, head.Version);
        Assert.False(head.KeepAlive);
    }

    [Theory]
    [InlineData("GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n", Http1TargetForm.Absolute)]
    [InlineData("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", Http1TargetForm.Absolute)]
    [InlineData("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", Http1TargetForm.Authority)]
    [InlineData("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", Http1TargetForm.Authority)]
    [InlineData("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Http1TargetForm.Asterisk)]
    [InlineData("GET /p HTTP/1.1\r\nHost: h\r\n\r\n", Http1TargetForm.Origin)]
    public void TryParse_TargetForms_AreClassified(string text, Http1TargetForm form)
    {
        using var head = ParseOne(text);
        Assert.Equal(form, head.TargetForm);
    }

    [Theory]
    [InlineData("CONNECT /path HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("CONNECT user@example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("GET 1http://x/ HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("GET /a\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n")]
    [InlineData("GET /a\u007f HTTP/1.1\r\nHost: h\r\n\r\n")]
    public void TryParse_InvalidTarget_Refused400(string text)
    {
        var e = ParseError(text);
        Assert.Equal(Http1ParseError.InvalidTarget, e.Error);
        Assert.Equal(400, e.StatusCode);
        Assert.Equal("invalid_target", e.Reason);
    }

    [Fact]
    public void TryParse_Http10WithoutHost_AcceptedNotKeptAlive()
    {
        using var head = ParseOne("GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n");
        Assert.Equal(Http1Version.Http10, head.Version);
        Assert.False(head.HasHost);
        Assert.False(head.KeepAlive);
    }

    [Fact]
    public void TryParse_Http10WithKeepAlive_KeptAlive()
    {
        using var head = ParseOne("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        Assert.True(head.KeepAlive);
    }

    [Fact]
    public void TryParse_Http11WithConnectionClose_NotKeptAlive()
    {
        using var head = ParseOne("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n");
        Assert.False(head.KeepAlive);
    }

    [Fact]
    public void TryParse_Http11WithoutHost_Refused400MissingHost()
    {
        var e = ParseError("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
        Assert.Equal(Http1ParseError.MissingHost, e.Error);
        Assert.Equal(400, e.StatusCode);
        Assert.Equal("missing_host", e.Reason);
    }

    [Fact]
    public void TryParse_TwoHostFields_Refused400()
    {
        var e = ParseError("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n");
        Assert.Equal(Http1ParseError.DuplicateHost, e.Error);
    }

    [Fact]
    public void TryParse_ExpectContinue_Flagged()
    {
        using var head = ParseOne("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n");
        Assert.True(head.ExpectContinue);
        Assert.Equal(Http1BodyKind.ContentLength, head.BodyKind);
        Assert.Equal(10, head.ContentLength);
    }

    [Fact]
    public void TryParse_ExpectContinueInHttp10_Ignored()
    {
        using var head = ParseOne("POST / HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
        Assert.False(head.ExpectContinue);
    }

    [Fact]
    public void TryParse_LeadingEmptyLinesCountTowardsTheRequestLineLimit()
    {
        var options = Http1ParserOptions.Default with { MaxStartLineBytes = 64 };
        using var ok = ParseOne(string.Concat(Enumerable.Repeat("\r\n", 10)) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", options);
        Assert.Equal(Http1ParseError.RequestLineTooLong, ParseError(string.Concat(Enumerable.Repeat("\r\n", 40)) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", options).Error);
        Assert.Equal(Http1ParseError.RequestLineTooLong, ParseError(string.Concat(Enumerable.Repeat("\r\n", 20)) + "GET /" + new string('a', 40) + " HTTP/1.1\r\nHost: h\r\n\r\n", options).Error);
    }

    [Fact]
    public void TryParse_LargestLegalHeadSplitAcrossSegments_Parsed()
    {
        var options = Http1ParserOptions.Default with { MaxStartLineBytes = 64, MaxHeaderBytes = 128 };
        var line = "GET /" + new string('a', 64 - 14) + " HTTP/1.1";
        Assert.Equal(64, line.Length);
        var headers = "Host: h\r\nX: " + new string('v', 128 - 9 - 5 - 2) + "\r\n\r\n";
        var bytes = TestSequences.Ascii(line + "\r\n" + headers);
        using var head = new Http1RequestHead();
        var sequence = TestSequences.SegmentPerByte(bytes);
        Assert.True(new Http1RequestHeadParser(options).TryParse(sequence, head, out var consumed));
        Assert.Equal(sequence.End, consumed);
    }

    [Fact]
    public void TryParse_WebSocketUpgrade_FlaggedWithProtocol()
    {
        using var head = ParseOne(ValidRequests[7]);
        Assert.True(head.IsUpgrade);
        Assert.Equal("websocket", TestSequences.Text(head.Upgrade));
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")]
    [InlineData("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n")]
    public void TryParse_IncompleteOrHttp10Upgrade_NotAnUpgrade(string text)
    {
        using var head = ParseOne(text);
        Assert.False(head.IsUpgrade);
    }

    [Fact]
    public void TryParse_Connect_NoBodyAndTunnel()
    {
        using var head = ParseOne("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        Assert.Equal(Http1Method.Connect, head.Method);
        Assert.Equal(Http1BodyKind.None, head.BodyKind);
        Assert.True(head.KeepAlive);
    }

    [Fact]
    public void TryParse_ConnectWithContentLength_NoBodyAndNotReused()
    {
        using var head = ParseOne("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 5\r\n\r\n");
        Assert.Equal(Http1BodyKind.None, head.BodyKind);
        Assert.False(head.KeepAlive);
    }

    [Fact]
    public void TryParse_HopByHopFields_MarkedIncludingThoseNamedInConnection()
    {
        using var head = ParseOne(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret, Content-Length, host\r\nKeep-Alive: 5\r\n" +
            "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nx-secret: 1\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n");
        var hop = new List<string>();
        var kept = new List<string>();
        for (var i = 0; i < head.Headers.Count; i++)
        {
            (head.Headers.IsHopByHop(i) ? hop : kept).Add(TestSequences.Text(head.Headers.GetName(i)));
        }

        Assert.Equal(["Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "x-secret"], hop);
        Assert.Equal(["Host", "X-Kept", "Content-Length"], kept);
    }

    [Fact]
    public void TryParse_TransferEncodingChunked_IsHopByHopAndChunked()
    {
        using var head = ParseOne("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        Assert.Equal(Http1BodyKind.Chunked, head.BodyKind);
        Assert.True(head.Headers.IsHopByHop(1));
        Assert.Equal(Http1KnownHeader.TransferEncoding, head.Headers.GetKnown(1));
    }

    [Fact]
    public void TryParse_ContentLengthWithLeadingZerosAndOws_Parsed()
    {
        using var head = ParseOne("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t007 \r\n\r\n");
        Assert.Equal(7, head.ContentLength);
    }

    [Fact]
    public void TryParse_UnregisteredMethod_Refused501UnlessAllowed()
    {
        var e = ParseError("FROB / HTTP/1.1\r\nHost: h\r\n\r\n");
        Assert.Equal(Http1ParseError.UnknownMethod, e.Error);
        Assert.Equal(501, e.StatusCode);

        using var head = ParseOne("FROB / HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParserOptions.Default with { AllowUnregisteredMethods = true });
        Assert.Equal(Http1Method.Other, head.Method);
        Assert.Equal("FROB", TestSequences.Text(head.MethodBytes));
    }

    [Theory]
    [InlineData("PROPFIND")]
    [InlineData("M-SEARCH")]
    [InlineData("PURGE")]
    [InlineData("QUERY")]
    public void TryParse_RegisteredExtensionMethod_AcceptedAsOther(string method)
    {
        using var head = ParseOne($"{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
        Assert.Equal(Http1Method.Other, head.Method);
        Assert.Equal(method, TestSequences.Text(head.MethodBytes));
    }

    [Theory]
    [InlineData("get / HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.UnknownMethod)]
    [InlineData("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidMethod)]
    [InlineData(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidMethod)]
    [InlineData("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidTarget)]
    [InlineData("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidMethod)]
    [InlineData("GET / http/1.1\r\nHost: h\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("GET / HTTP/1.10\r\nHost: h\r\n\r\n", Http1ParseError.InvalidVersion)]
    [InlineData("GET / HTTP/2.0\r\nHost: h\r\n\r\n", Http1ParseError.UnsupportedVersion)]
    [InlineData("GET / HTTP/1.2\r\nHost: h\r\n\r\n", Http1ParseError.UnsupportedVersion)]
    [InlineData("GET / HTTP/0.9\r\n\r\n", Http1ParseError.UnsupportedVersion)]
    [InlineData("GET /\r\n\r\n", Http1ParseError.InvalidRequestLine)]
    public void TryParse_MalformedRequestLine_Refused(string text, Http1ParseError error)
    {
        var e = ParseError(text);
        Assert.Equal(error, e.Error);
    }

    [Theory]
    [InlineData("GET / HTTP/5.6", Http1ParseError.UnsupportedVersion)]
    [InlineData("GET / HTTP/1.1x", Http1ParseError.InvalidVersion)]
    [InlineData("GET / ICE/", Http1ParseError.InvalidVersion)]
    [InlineData("GET /a\u00e9 ", Http1ParseError.InvalidTarget)]
    [InlineData("FROB ", Http1ParseError.UnknownMethod)]
    [InlineData("G@T ", Http1ParseError.InvalidMethod)]
    public void TryParse_IncompleteRequestLine_RefusedAsSoonAsItCannotBecomeValid(string text, Http1ParseError error)
    {
        Assert.Equal(error, ParseError(text).Error);
        Assert.Equal(error, ParseError(text + "\r\nHost: h\r\n\r\n").Error);
    }

    [Fact]
    public void TryParse_UnsupportedVersion_Answered505()
    {
        Assert.Equal(505, ParseError("GET / HTTP/2.0\r\nHost: h\r\n\r\n").StatusCode);
    }

    [Fact]
    public void TryParse_RequestLineAtLimit_AcceptedAndOneOver_Refused414()
    {
        var options = Http1ParserOptions.Default with { MaxStartLineBytes = 64 };
        var prefix = "GET /";
        var suffix = " HTTP/1.1";
        var atLimit = prefix + new string('a', 64 - prefix.Length - suffix.Length) + suffix;
        using var ok = ParseOne(atLimit + "\r\nHost: h\r\n\r\n", options);

        var over = prefix + new string('a', 65 - prefix.Length - suffix.Length) + suffix;
        var e = ParseError(over + "\r\nHost: h\r\n\r\n", options);
        Assert.Equal(Http1ParseError.RequestLineTooLong, e.Error);
        Assert.Equal(414, e.StatusCode);
        Assert.Equal("request_line_too_long", e.Reason);
    }

    [Fact]
    public void TryParse_IncompleteRequestLineOverLimit_Refused414WithoutWaitingForCrlf()
    {
        var options = Http1ParserOptions.Default with { MaxStartLineBytes = 64 };
        var e = ParseError("GET /" + new string('a', 100), options);
        Assert.Equal(Http1ParseError.RequestLineTooLong, e.Error);
    }

    [Fact]
    public void TryParse_HeaderBytesAtLimit_AcceptedAndOneOver_Refused431()
    {
        var options = Http1ParserOptions.Default with { MaxHeaderBytes = 64 };
        // Header section = "Host: h\r\n" (9) + "X: <v>\r\n" (5 + v) + "\r\n" (2) = 64 -> v = 48.
        using var ok = ParseOne("GET / HTTP/1.1\r\nHost: h\r\nX: " + new string('v', 48) + "\r\n\r\n", options);
        var e = ParseError("GET / HTTP/1.1\r\nHost: h\r\nX: " + new string('v', 49) + "\r\n\r\n", options);
        Assert.Equal(Http1ParseError.HeaderTooLarge, e.Error);
        Assert.Equal(431, e.StatusCode);
        Assert.Equal("header_too_large", e.Reason);
    }

    [Fact]
    public void TryParse_IncompleteHeadersOverLimit_Refused431()
    {
        var options = Http1ParserOptions.Default with { MaxHeaderBytes = 64 };
        var e = ParseError("GET / HTTP/1.1\r\nHost: h\r\nX: " + new string('v', 100), options);
        Assert.Equal(Http1ParseError.HeaderTooLarge, e.Error);
    }

    [Fact]
    public void TryParse_HeaderCountAtLimit_AcceptedAndOneOver_Refused431()
    {
        var options = Http1ParserOptions.Default with { MaxHeaderCount = 5 };
        var five = "GET / HTTP/1.1\r\nHost: h\r\n" + string.Concat(Enumerable.Range(0, 4).Select(i => $"X{i}: v\r\n"));
        using var ok = ParseOne(five + "\r\n", options);
        Assert.Equal(5, ok.Headers.Count);
        var e = ParseError(five + "X9: v\r\n\r\n", options);
        Assert.Equal(Http1ParseError.TooManyHeaders, e.Error);
        Assert.Equal(431, e.StatusCode);
        Assert.Equal("too_many_headers", e.Reason);
    }

    [Fact]
    public void TryParse_DefaultLimits_AreThoseOfTheBrief()
    {
        var o = Http1ParserOptions.Default;
        Assert.Equal(8 * 1024, o.MaxStartLineBytes);
        Assert.Equal(32 * 1024, o.MaxHeaderBytes);
        Assert.Equal(100, o.MaxHeaderCount);
        Assert.Empty(o.Validate());
        Assert.Equal(2, (o with { MaxHeaderBytes = 0, MaxChunkLineBytes = 0 }).Validate().Count);
    }

    [Fact]
    public void TryParse_LargeHeadAcrossManySegments_ParsedFromPooledCopy()
    {
        var text = "GET / HTTP/1.1\r\nHost: h\r\n" + string.Concat(Enumerable.Range(0, 90).Select(i => $"X-Header-{i}: {new string('v', 200)}\r\n")) + "\r\n";
        var bytes = TestSequences.Ascii(text);
        var sequence = TestSequences.Split(bytes, 4096, 8192, 12288, 16384);
        using var head = new Http1RequestHead();
        Assert.True(new Http1RequestHeadParser().TryParse(sequence, head, out var consumed));
        Assert.Equal(sequence.End, consumed);
        Assert.Equal(91, head.Headers.Count);
        Assert.Equal("X-Header-89", TestSequences.Text(head.Headers.GetName(90)));
    }

    [Fact]
    public void TryParse_SteadyState_AllocatesNothing()
    {
        var bytes = TestSequences.Ascii(Browserish);
        var single = TestSequences.Single(bytes);
        var multi = TestSequences.Split(bytes, 40, 100);
        var parser = new Http1RequestHeadParser();
        using var head = new Http1RequestHead();
        Assert.True(parser.TryParse(single, head, out _));
        Assert.True(parser.TryParse(multi, head, out _));
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            parser.TryParse(single, head, out _);
            parser.TryParse(multi, head, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>
/// Every strict-mode case of the llhttp corpus, run through the codec as one segment and as one segment
/// per byte. Where llhttp rejects, the proxy must not forward the input as it stands; where llhttp
/// accepts, we must parse the same messages (method, target, version, status, fields in order, body,
/// trailers). The cases where we are stricter on purpose are listed below by id, each with its reason.
/// </summary>
public sealed class LlhttpCorpusTests
{
    /// <summary>llhttp accepts these; we refuse them on purpose, with this error.</summary>
    private static readonly Dictionary<string, (Http1ParseError Error, string Why)> StricterOnPurpose = new(StringComparer.Ordinal)
    {
        ["request/method.md:375"] = (Http1ParseError.InvalidVersion, "ICE/1.0 (SHOUTcast) is not HTTP; the proxy speaks HTTP/1.0 and 1.1 only"),
        ["request/method.md:405"] = (Http1ParseError.InvalidVersion, "RTSP/1.0 is not HTTP"),
        ["request/method.md:433"] = (Http1ParseError.UnknownMethod, "ANNOUNCE is an RTSP method, not in the HTTP method registry (501)"),
        ["request/method.md:461"] = (Http1ParseError.UnknownMethod, "PRI is reserved for the HTTP/2 preface; protocol detection sends h2 elsewhere before this codec"),
        ["request/sample.md:317"] = (Http1ParseError.InvalidRequestLine, "HTTP/0.9 request line without version; HTTP/0.9 is not supported"),
        ["request/transfer-encoding.md:754"] = (Http1ParseError.UnsupportedTransferCoding, "'deflate, chunked': we do not implement deflate as a transfer coding and would lose it on re-framing (501, RFC 9112 §6.1)"),
        ["request/transfer-encoding.md:796"] = (Http1ParseError.UnsupportedTransferCoding, "deflate then chunked in two fields: same as above (501)"),
        ["response/sample.md:43"] = (Http1ParseError.InvalidVersion, "RTSP/1.1 status line is not HTTP"),
        ["response/sample.md:63"] = (Http1ParseError.InvalidVersion, "ICE/1.1 status line is not HTTP"),
        ["response/sample.md:648"] = (Http1ParseError.UnsupportedVersion, "HTTP/0.9 is not supported (505 class; the forwarder answers 502)"),
    };

    /// <summary>
    /// HTTP/1.1 requests without Host: llhttp accepts them, RFC 9112 §3.2 says a server MUST answer 400, and
    /// so do we. For these the test checks the refusal and then compares the rest of the parse with
    /// <see cref="Http1ParserOptions.RequireHostForHttp11"/> off.
    /// </summary>
    private static readonly HashSet<string> MissingHost = new(StringComparer.Ordinal)
    {
        "request/connection.md:9",
        "request/connection.md:37",
        "request/connection.md:239",
        "request/connection.md:267",
        "request/connection.md:456",
        "request/connection.md:545",
        "request/connection.md:682",
        "request/connection.md:716",
        "request/content-length.md:7",
        "request/content-length.md:44",
        "request/content-length.md:293",
        "request/content-length.md:320",
        "request/finish.md:9",
        "request/method.md:7",
        "request/pipelining.md:7",
        "request/sample.md:9",
        "request/sample.md:47",
        "request/sample.md:171",
        "request/sample.md:199",
        "request/sample.md:222",
        "request/sample.md:294",
        "request/sample.md:481",
        "request/sample.md:511",
        "request/sample.md:541",
        "request/transfer-encoding.md:9",
        "request/transfer-encoding.md:36",
        "request/transfer-encoding.md:73",
        "request/transfer-encoding.md:110",
        "request/transfer-encoding.md:147",
        "request/transfer-encoding.md:189",
        "request/transfer-encoding.md:241",
        "request/transfer-encoding.md:369",
        "request/transfer-encoding.md:754",
        "request/transfer-encoding.md:796",
        "request/uri.md:7",
        "request/uri.md:32",
        "request/uri.md:55",
        "request/uri.md:78",
        "request/uri.md:105",
        "request/uri.md:128",
        "request/uri.md:168",
        "request/uri.md:225",
    };

    /// <summary>
    /// llhttp rejects these while the head is still incomplete; we validate a line once it is complete, so
    /// for the input as it stands we wait for more bytes and forward nothing (then the limits or the
    /// connection's end decide).
    /// </summary>
    private static readonly Dictionary<string, string> RejectedLaterOnPurpose = new(StringComparer.Ordinal)
    {
    };

    public static TheoryData<string> StrictCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in LlhttpCorpus.Cases.Values)
        {
            if (c.StrictDefault)
            {
                data.Add(c.Id);
            }
        }

        return data;
    }

    [Fact]
    public void Corpus_IsPresent_HasStrictCasesOfEveryOutcome()
    {
        var strict = LlhttpCorpus.Cases.Values.Where(c => c.StrictDefault).ToList();
        Assert.Contains(strict, c => c.Outcome == "error" && c.IsRequest);
        Assert.Contains(strict, c => c.Outcome == "error" && !c.IsRequest);
        Assert.Contains(strict, c => c.Outcome == "ok" && c.IsRequest);
        Assert.Contains(strict, c => c.Outcome == "ok" && !c.IsRequest);
        Assert.Contains(strict, c => c.Outcome == "upgrade");
    }

    [Fact]
    public void AllowLists_NameOnlyStrictCasesThatExist()
    {
        foreach (var id in StricterOnPurpose.Keys.Concat(MissingHost).Concat(RejectedLaterOnPurpose.Keys))
        {
            Assert.True(LlhttpCorpus.Cases.TryGetValue(id, out var c), $"allow-list names unknown case {id}");
            Assert.True(c.StrictDefault, $"allow-list names non-strict case {id}");
        }

        foreach (var id in StricterOnPurpose.Keys.Concat(MissingHost))
        {
            Assert.NotEqual("error", LlhttpCorpus.Cases[id].Outcome);
        }

        foreach (var id in RejectedLaterOnPurpose.Keys)
        {
            Assert.Equal("error", LlhttpCorpus.Cases[id].Outcome);
        }
    }

    [Theory]
    [MemberData(nameof(StrictCases))]
    public void StrictCase_ParsesLikeLlhttpOrIsRefused(string id)
    {
        var c = LlhttpCorpus.Cases[id];
        foreach (var (shape, sequence) in TestSequences.Shapes(c.Raw))
        {
            var options = Http1ParserOptions.Default;
            var result = Run(c, sequence, options);
            if (MissingHost.Contains(id))
            {
                Assert.True(result.Outcome == DriverOutcome.Rejected && result.Error == Http1ParseError.MissingHost,
                    $"{id} ({shape}): expected missing_host, got {result}");
                options = options with { RequireHostForHttp11 = false };
                result = Run(c, sequence, options);
            }

            if (StricterOnPurpose.TryGetValue(id, out var stricter))
            {
                Assert.True(result.Outcome == DriverOutcome.Rejected && result.Error == stricter.Error,
                    $"{id} ({shape}): expected refusal {stricter.Error} ({stricter.Why}), got {result}");
                continue;
            }

            if (c.Outcome == "error")
            {
                AssertNotForwarded(c, shape, result);
            }
            else
            {
                AssertSameMessages(c, shape, result);
            }
        }
    }

    private static DriverResult Run(LlhttpCase c, System.Buffers.ReadOnlySequence<byte> sequence, Http1ParserOptions options) =>
        c.IsRequest ? Http1TestDriver.RunRequests(sequence, options) : Http1TestDriver.RunResponses(sequence, options);

    private static void AssertNotForwarded(LlhttpCase c, string shape, DriverResult result)
    {
        switch (result.Outcome)
        {
            case DriverOutcome.Rejected:
                return;
            case DriverOutcome.Closed when result.UnreadBytes > 0:
                // We stop reading at Connection: close / HTTP/1.0; the bytes llhttp objects to are never read.
                Assert.True(result.Messages.Count <= Math.Max(1, c.MessagesComplete), $"{c.Id} ({shape}): {result}");
                return;
            case DriverOutcome.Truncated when RejectedLaterOnPurpose.ContainsKey(c.Id):
                return;
            default:
                Assert.Fail($"{c.Id} ({shape}): llhttp rejects this, but we would forward it: {result}");
                return;
        }
    }

    private static void AssertSameMessages(LlhttpCase c, string shape, DriverResult result)
    {
        Assert.True(result.Outcome != DriverOutcome.Rejected, $"{c.Id} ({shape}): llhttp accepts this, we refused it with {result.Error}");
        var expected = c.ExpectedMessages();
        Assert.True(expected.Count == result.Messages.Count, $"{c.Id} ({shape}): llhttp completed {expected.Count} heads, we {result.Messages.Count} ({result})");
        for (var i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            var a = result.Messages[i];
            var where = $"{c.Id} ({shape}) message {i}";
            if (c.IsRequest)
            {
                Assert.True(e.Method == a.Method, $"{where}: method {a.Method} != {e.Method}");
                Assert.True(e.Target == a.Target, $"{where}: target {a.Target} != {e.Target}");
            }
            else
            {
                Assert.True(e.Status == a.Status, $"{where}: status {a.Status} != {e.Status}");
            }

            Assert.True(e.Version == a.Version, $"{where}: version {a.Version} != {e.Version}");
            Assert.True(e.Headers.SequenceEqual(a.Headers), $"{where}: headers [{string.Join("|", a.Headers)}] != [{string.Join("|", e.Headers)}]");
            Assert.True(e.Trailers.SequenceEqual(a.Trailers), $"{where}: trailers [{string.Join("|", a.Trailers)}] != [{string.Join("|", e.Trailers)}]");
            Assert.True(e.Body.SequenceEqual(a.Body), $"{where}: body {TestSequences.Text(a.Body.ToArray())} != {TestSequences.Text(e.Body.ToArray())}");
            Assert.True(e.Complete == a.Complete, $"{where}: complete {a.Complete} != {e.Complete}");
        }

        if (c.Outcome == "upgrade")
        {
            Assert.True(result.Outcome == DriverOutcome.Tunnel, $"{c.Id} ({shape}): llhttp switches protocols here, we ended with {result}");
        }
    }
}

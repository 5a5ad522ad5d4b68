using System.Buffers;
using System.Text;
using Proxy.Http.Http1;
using Proxy.Http.Tests.Http1;

namespace Proxy.Http.Tests.Fuzz;

/// <summary>
/// Inputs found by the AFL++ fuzzing of tests/fuzz (see tests/fuzz/README.md), minimized, each pinned to the
/// contract the fuzz harness checks.
/// </summary>
public sealed class Http1FuzzRegressionTests
{
    private static readonly Http1ParserOptions SmallLimits = new() { MaxStartLineBytes = 64, MaxHeaderBytes = 256, MaxHeaderCount = 8 };

    /// <summary>
    /// http1-head crash id:000002 (minimized): a start line longer than the limit that ends in a bare LF. All in one
    /// segment it was refused as bare_lf (400); with the first segment ending before the LF, the first-segment pass
    /// refused it on its length (414). The same bytes must get the same answer however they are segmented.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OverlongStartLineEndingInBareLf_SameErrorWhateverTheSegmentation(bool response)
    {
        var line = response ? "HTTP/1.1 200 " + new string('a', 70) : "GET /" + new string('a', 70) + " HTTP/1.1";
        var bytes = Encoding.ASCII.GetBytes(line + "\n\r\n");
        var errors = new List<Http1ParseError>();
        foreach (var sequence in new[] { TestSequences.Single(bytes), TestSequences.Split(bytes, 66), TestSequences.SegmentPerByte(bytes) })
        {
            errors.Add(Refuse(sequence, response));
        }

        Assert.All(errors, e => Assert.Equal(Http1ParseError.RequestLineTooLong, e));
    }

    /// <summary>
    /// http1-head crashes id:000015 and id:000020 (harness over-strict, parser right): a partial request line with a
    /// visible bad version is refused at once, while the same line followed by a CR waits for its LF (a line holding a
    /// CR is judged whole). Completed, it is refused too: no arrival order gets it accepted.
    /// </summary>
    [Fact]
    public void BadVersion_RefusedPartial_WaitsAfterCr_RefusedComplete()
    {
        var options = new Http1ParserOptions();
        Assert.Equal(Http1ParseError.InvalidVersion, Refuse(TestSequences.Single("GET / HH"u8.ToArray()), response: false, options));
        using (var head = new Http1RequestHead())
        {
            Assert.False(new Http1RequestHeadParser(options).TryParse(TestSequences.Single("GET / HH\r"u8.ToArray()), head, out _));
        }

        Assert.Equal(Http1ParseError.InvalidVersion, Refuse(TestSequences.Single("GET / HH\r\nHost: h\r\n\r\n"u8.ToArray()), response: false, options));
    }

    /// <summary>
    /// http1-head crash id:000004 (harness over-strict, parser right): the partial line "OUT " is refused as an unknown
    /// method (501); the whole line also holds a bare CR, which is checked first (400). Refused either way.
    /// </summary>
    [Fact]
    public void UnknownMethodAndBareCr_RefusedWhicheverArrivesFirst()
    {
        var options = new Http1ParserOptions();
        Assert.Equal(Http1ParseError.UnknownMethod, Refuse(TestSequences.Single("OUT /u"u8.ToArray()), response: false, options));
        var whole = "OUT /u HTTP/1.1\rd\r\nHost: h\r\n\r\n"u8.ToArray();
        Assert.Equal(Http1ParseError.BareCr, Refuse(TestSequences.Single(whole), response: false, options));
        Assert.Equal(Http1ParseError.BareCr, Refuse(TestSequences.SegmentPerByte(whole), response: false, options));
    }

    /// <summary>
    /// http1-chunked crashes id:000000..000007 (harness over-strict, decoder right): a trailer section past the limit
    /// whose first line holds a bare CR. All at once it is refused as too large (431); arriving in small reads, the bare CR
    /// is seen first (400). Refused either way, with no payload delivered.
    /// </summary>
    [Fact]
    public void OversizeTrailersWithBareCr_RefusedWhicheverArrivesFirst()
    {
        var options = new Http1ParserOptions { MaxChunkLineBytes = 16, MaxTrailerBytes = 64 };
        var body = Encoding.ASCII.GetBytes("0\r\nTrailer-A: 1\rhh" + new string('h', 80));

        var whole = new ChunkedBodyReader(options);
        whole.Reset();
        var e = Assert.Throws<Http1ParseException>(() => whole.Read(TestSequences.Single(body), out _, out _));
        Assert.Equal(Http1ParseError.TrailerTooLarge, e.Error);

        // Reads of 8 bytes, each time offering everything not yet consumed, as the pipe loop does.
        var pieces = new ChunkedBodyReader(options);
        pieces.Reset();
        var start = 0;
        var error = Assert.Throws<Http1ParseException>(Feed);
        void Feed()
        {
            for (var end = 8; end <= body.Length; end += 8)
            {
                var buffer = TestSequences.Single(body[start..end]);
                Assert.Equal(ChunkedReadResult.NeedMoreData, pieces.Read(buffer, out _, out var consumed));
                start += (int)buffer.Slice(buffer.Start, consumed).Length;
            }
        }

        Assert.Equal(Http1ParseError.BareCr, error.Error);
        Assert.Equal(0, pieces.BytesRead);
    }

    private static Http1ParseError Refuse(ReadOnlySequence<byte> sequence, bool response, Http1ParserOptions? options = null)
    {
        options ??= SmallLimits;
        var e = Assert.Throws<Http1ParseException>(() =>
        {
            if (response)
            {
                using var head = new Http1ResponseHead();
                new Http1ResponseHeadParser(options).TryParse(sequence, Http1Method.Get, head, out _);
            }
            else
            {
                using var head = new Http1RequestHead();
                new Http1RequestHeadParser(options).TryParse(sequence, head, out _);
            }
        });
        return e.Error;
    }
}

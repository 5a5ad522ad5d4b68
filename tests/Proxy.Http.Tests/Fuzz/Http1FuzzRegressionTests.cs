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

    private static Http1ParseError Refuse(ReadOnlySequence<byte> sequence, bool response)
    {
        var e = Assert.Throws<Http1ParseException>(() =>
        {
            if (response)
            {
                using var head = new Http1ResponseHead();
                new Http1ResponseHeadParser(SmallLimits).TryParse(sequence, Http1Method.Get, head, out _);
            }
            else
            {
                using var head = new Http1RequestHead();
                new Http1RequestHeadParser(SmallLimits).TryParse(sequence, head, out _);
            }
        });
        return e.Error;
    }
}

using Proxy.Bench.Hpack;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Bench.Tests.Hpack;

public sealed class HpackCompressionReportTests
{
    private static HpackStoryData Story(string name, byte[]?[] wires, params (string, string)[][] cases) =>
        new(name, cases.Select(c => (IReadOnlyList<(string, string)>)c.ToList()).ToList(), wires);

    private static readonly HpackStoryData[] s_raw =
    [
        Story("story_00", [null], [("a", "12")]),                   // raw 3 bytes
        Story("story_01", [null, null], [("bb", "1")], [("c", "")]), // raw 3 + 1 = 4 bytes
    ];

    [Fact]
    public void Compute_MatchingStories_SumsWireRawAndOurBytesOverTheSameStories()
    {
        var others = new Dictionary<string, IReadOnlyList<HpackStoryData>>
        {
            ["impl"] =
            [
                Story("story_00", [new byte[2]], [("a", "12")]),
                Story("story_01", [new byte[3], new byte[1]], [("bb", "1")], [("c", "")]),
            ],
            ["partial"] =
            [
                Story("story_00", [new byte[5]], [("a", "12")]),
                Story("story_01", [new byte[9], new byte[9]], [("bb", "2")], [("c", "")]), // different value: skipped
            ],
        };

        var rows = HpackCompressionReport.Compute(s_raw, others, s => s.Name == "story_00" ? 10 : 20);

        Assert.Equal(new HpackReportRow(HpackCompressionReport.OursName, 2, 30, 7, 30), rows[0]);
        Assert.Equal(new HpackReportRow("impl", 2, 6, 7, 30), rows[1]);
        Assert.Equal(new HpackReportRow("partial", 1, 5, 3, 10), rows[2]);
        Assert.Equal(6.0 / 7, rows[1].RatioToRaw, 9);
        Assert.Equal(0.2, rows[1].RatioToOurs, 9);
        Assert.Equal(0.5, rows[2].RatioToOurs, 9);
    }

    [Fact]
    public void Compute_StoryWithDifferentCaseCount_IsSkipped()
    {
        var others = new Dictionary<string, IReadOnlyList<HpackStoryData>>
        {
            ["short"] = [Story("story_01", [new byte[3]], [("bb", "1")])],
        };

        var rows = HpackCompressionReport.Compute(s_raw, others, _ => 1);
        Assert.Equal(0, rows[1].Stories);
        Assert.Equal(0, rows[1].RatioToOurs);
    }

    [Fact]
    public void EncodeWithOurs_RepeatedList_SecondBlockIsOneBytePerField()
    {
        var story = Story("s", [null, null], [(":method", "GET"), ("x-custom", "value")], [(":method", "GET"), ("x-custom", "value")]);
        var first = HpackCompressionReport.EncodeWithOurs(Story("s", [null], [(":method", "GET"), ("x-custom", "value")]), new HpackEncoderOptions());
        Assert.Equal(first + 2, HpackCompressionReport.EncodeWithOurs(story, new HpackEncoderOptions()));
    }

    [Fact]
    public void ToMarkdown_Rows_FormatsRatiosWithThreeDecimals()
    {
        var text = HpackCompressionReport.ToMarkdown([new HpackReportRow("impl", 2, 6, 7, 30)], new DateTimeOffset(2026, 11, 26, 7, 0, 0, TimeSpan.Zero));
        Assert.Contains("| impl | 2 | 6 | 0.857 | 0.200 |", text, StringComparison.Ordinal);
        Assert.Contains("2026-11-26 07:00 UTC", text, StringComparison.Ordinal);
    }
}

using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

public class DemoOptionsParserTests
{
    private static DemoOptions? Parse(List<string> errors, string? rps = null, string? concurrency = null, string? duration = null, string? split = null, string? share = null, bool json = false) =>
        DemoOptionsParser.Parse(rps, concurrency, duration, split, share, json, errors);

    [Fact]
    public void Parse_NoFlags_Defaults()
    {
        var errors = new List<string>();
        var options = Parse(errors);

        Assert.Empty(errors);
        Assert.NotNull(options);
        Assert.Equal(50, options.RequestsPerSecond);
        Assert.Equal(4, options.Concurrency);
        Assert.Null(options.Duration);
        Assert.Equal([new SplitWeight("v1", 90), new SplitWeight("v2", 10)], options.Split);
        Assert.Equal(0.1, options.HeaderShare);
        Assert.False(options.Json);
        Assert.Equal(0.9, options.ConfiguredShare("v1"), 9);
    }

    [Theory]
    [InlineData("30s", 30_000)]
    [InlineData("250ms", 250)]
    [InlineData("2m", 120_000)]
    [InlineData("00:00:03", 3_000)]
    public void Parse_Duration_ProjectSyntaxOrTimeSpan(string text, int milliseconds)
    {
        var errors = new List<string>();
        var options = Parse(errors, duration: text);

        Assert.Empty(errors);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), options!.Duration);
    }

    [Fact]
    public void Parse_Split_OrderAndWeightsKept()
    {
        var errors = new List<string>();
        var options = Parse(errors, split: "v2:1, v1:3", rps: "0", concurrency: "16", share: "0", json: true);

        Assert.Empty(errors);
        Assert.Equal([new SplitWeight("v2", 1), new SplitWeight("v1", 3)], options!.Split);
        Assert.Equal(0.25, options.ConfiguredShare("v2"));
        Assert.Equal(0, options.RequestsPerSecond);
        Assert.Equal(16, options.Concurrency);
        Assert.Equal(0, options.HeaderShare);
        Assert.True(options.Json);
    }

    [Theory]
    [InlineData("v1:90,v1:10", "--split: v1 is given twice")]
    [InlineData("v1:0", "--split: weight of v1: 0 is out of range (1-1000)")]
    [InlineData("v1", "--split: \"v1\" is not subset:weight")]
    [InlineData("v1:x", "--split: weight of v1: \"x\" is not a whole number")]
    [InlineData("", "--split: \"\" is not subset:weight")]
    public void Parse_BadSplit_NamesTheFlag(string split, string expected)
    {
        var errors = new List<string>();

        Assert.Null(Parse(errors, split: split));
        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Parse_EveryBadValue_ReportedTogether()
    {
        var errors = new List<string>();

        Assert.Null(Parse(errors, rps: "-1", concurrency: "5000", duration: "0s", split: "v9:1", share: "1.5"));
        Assert.Equal(5, errors.Count);
    }
}

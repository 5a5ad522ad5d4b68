using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class SummaryTests
{
    [Fact]
    public void Of_OddCount_MedianIsMiddleValue()
    {
        var summary = Summary.Of([5.0, 1.0, 3.0])!.Value;

        Assert.Equal(3.0, summary.Median);
        Assert.Equal(1.0, summary.Min);
        Assert.Equal(5.0, summary.Max);
        Assert.Equal(3, summary.Count);
    }

    [Fact]
    public void Of_EvenCount_MedianIsMeanOfMiddleTwo()
    {
        Assert.Equal(2.5, Summary.Of([4.0, 1.0, 2.0, 3.0])!.Value.Median);
    }

    [Fact]
    public void Of_OnlyNonFinite_IsNull()
    {
        Assert.Null(Summary.Of([double.NaN, double.PositiveInfinity]));
        Assert.Null(Summary.Of([]));
    }

    [Fact]
    public void Format_SeveralValues_ShowsMedianAndRange()
    {
        Assert.Equal("2.00 (1.00–3.50)", Summary.Of([1.0, 2.0, 3.5]).Format("F2"));
        Assert.Equal("7.0", Summary.Of([7.0]).Format("F1"));
        Assert.Equal("–", Summary.Of([]).Format("F1"));
    }
}

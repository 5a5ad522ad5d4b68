using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

public class LatencyHistogramTests
{
    [Fact]
    public void IndexOf_EveryValueFallsInItsBucketsRange_WithinThreePercent()
    {
        var previousIndex = -1;
        for (long v = 0; v <= LatencyHistogram.MaxMicroseconds; v = v < 5000 ? v + 1 : v + (v / 997))
        {
            var index = LatencyHistogram.IndexOf(v);
            var (low, high) = LatencyHistogram.RangeOf(index);
            Assert.InRange(v, low, high);
            Assert.True(index >= previousIndex, $"index of {v} went down");
            Assert.True(high - low <= v / 32, $"bucket [{low},{high}] too wide for {v}");
            previousIndex = index;
        }
    }

    [Fact]
    public void RangeOf_BucketsContiguous()
    {
        var last = LatencyHistogram.IndexOf(LatencyHistogram.MaxMicroseconds);
        Assert.Equal((0L, 0L), LatencyHistogram.RangeOf(0));
        for (var i = 1; i <= last; i++)
        {
            Assert.Equal(LatencyHistogram.RangeOf(i - 1).High + 1, LatencyHistogram.RangeOf(i).Low);
            Assert.Equal(i, LatencyHistogram.IndexOf(LatencyHistogram.RangeOf(i).Low));
            Assert.Equal(i, LatencyHistogram.IndexOf(LatencyHistogram.RangeOf(i).High));
        }
    }

    [Fact]
    public void Percentile_UniformValues_WithinBucketPrecision()
    {
        var h = new LatencyHistogram();
        for (var v = 1; v <= 10_000; v++)
        {
            h.Record(v);
        }

        Assert.Equal(10_000, h.Count);
        Assert.InRange(h.Percentile(50)!.Value, 5000 * 0.97, 5000 * 1.03);
        Assert.InRange(h.Percentile(90)!.Value, 9000 * 0.97, 9000 * 1.03);
        Assert.InRange(h.Percentile(99)!.Value, 9900 * 0.97, 9900 * 1.03);
        Assert.InRange(h.Percentile(100)!.Value, 10_000 * 0.97, 10_000 * 1.03);
    }

    [Fact]
    public void Percentile_SmallValues_Exact()
    {
        var h = new LatencyHistogram();
        h.Record(3);
        h.Record(7);
        h.Record(7);
        h.Record(40);

        Assert.Equal(3, h.Percentile(25));
        Assert.Equal(7, h.Percentile(50));
        Assert.Equal(7, h.Percentile(75));
        Assert.Equal(40, h.Percentile(99));
    }

    [Fact]
    public void Percentile_Empty_Null()
    {
        Assert.Null(new LatencyHistogram().Percentile(50));
    }

    [Fact]
    public void AddAndClear_MergeCountsThenEmpty()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        a.Record(10);
        b.Record(1_000_000);
        b.Record(long.MaxValue);

        a.Add(b);
        Assert.Equal(3, a.Count);
        Assert.Equal(10, a.Percentile(33));
        Assert.InRange(a.Percentile(100)!.Value, LatencyHistogram.MaxMicroseconds * 0.97, LatencyHistogram.MaxMicroseconds * 1.03);

        a.Clear();
        Assert.Equal(0, a.Count);
        Assert.Null(a.Percentile(50));
    }
}

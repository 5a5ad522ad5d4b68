using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

public class DemoStatsTests
{
    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualTime : TimeProvider
    {
        public long Now;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Now;
    }

    /// <summary>Latencies come back as the middle of their histogram bucket: within 3%.</summary>
    private static void AssertNear(double expected, double? actual)
    {
        Assert.NotNull(actual);
        Assert.InRange(actual.Value, expected * 0.97, expected * 1.03);
    }

    [Fact]
    public void Snapshot_IntervalResetsAndTotalsAccumulate()
    {
        var time = new ManualTime();
        var stats = new DemoStats(time);
        stats.Record(DemoTarget.V1, withHeader: false, succeeded: true, TimeSpan.FromMilliseconds(1));
        stats.Record(DemoTarget.V1, withHeader: false, succeeded: true, TimeSpan.FromMilliseconds(3));
        stats.Record(DemoTarget.V2, withHeader: true, succeeded: false, TimeSpan.FromMilliseconds(8));
        time.Now += TimeSpan.TicksPerSecond;

        var first = stats.Snapshot();
        Assert.Equal(TimeSpan.FromSeconds(1), first.Elapsed);
        Assert.Equal(TimeSpan.FromSeconds(1), first.IntervalLength);
        Assert.Equal(2, first[DemoTarget.V1].Requests);
        Assert.Equal(2, first[DemoTarget.V1].IntervalRequests);
        Assert.Equal(1.0, first[DemoTarget.V1].SuccessRate);
        Assert.Equal(0.0, first[DemoTarget.V2].SuccessRate);
        Assert.Null(first[DemoTarget.Proxy].SuccessRate);
        AssertNear(1.0, first[DemoTarget.V1].IntervalLatency.P50);
        AssertNear(3.0, first[DemoTarget.V1].IntervalLatency.P99);
        Assert.Equal(2, first.SplitLanded);
        Assert.Equal(1, first.HeaderTotal);
        Assert.Equal(1.0, first.ObservedSplitShare(DemoTarget.V1));
        Assert.Equal(0.0, first.ObservedSplitShare(DemoTarget.V2));

        stats.Record(DemoTarget.V2, withHeader: false, succeeded: true, TimeSpan.FromMilliseconds(20));
        stats.Record(DemoTarget.Failed, withHeader: false, succeeded: false, TimeSpan.FromMilliseconds(5));
        time.Now += TimeSpan.TicksPerSecond / 2;

        var second = stats.Snapshot();
        Assert.Equal(TimeSpan.FromSeconds(1.5), second.Elapsed);
        Assert.Equal(TimeSpan.FromSeconds(0.5), second.IntervalLength);
        Assert.Equal(2, second[DemoTarget.V1].Requests);
        Assert.Equal(0, second[DemoTarget.V1].IntervalRequests);
        Assert.Null(second[DemoTarget.V1].IntervalLatency.P50);
        AssertNear(3.0, second[DemoTarget.V1].TotalLatency.P99);
        Assert.Equal(2, second[DemoTarget.V2].Requests);
        Assert.Equal(1, second[DemoTarget.V2].IntervalSucceeded);
        Assert.Equal(0.5, second[DemoTarget.V2].SuccessRate);
        Assert.Equal(1, second[DemoTarget.Failed].Requests);
        Assert.Equal(3, second.SplitLanded);
        Assert.Equal(1.0 / 3, second.ObservedSplitShare(DemoTarget.V2)!.Value, 9);
    }

    [Fact]
    public void Snapshot_NothingRecorded_NoShares()
    {
        var snapshot = new DemoStats(new ManualTime()).Snapshot();

        Assert.Equal(0, snapshot.SplitLanded);
        Assert.Null(snapshot.ObservedSplitShare(DemoTarget.V1));
        Assert.Null(snapshot[DemoTarget.V2].TotalLatency.P50);
    }

    [Fact]
    public async Task Report_JsonInterval_CarriesTargetsSplitAndHeader()
    {
        var time = new ManualTime();
        var stats = new DemoStats(time);
        stats.Record(DemoTarget.V1, withHeader: false, succeeded: true, TimeSpan.FromMilliseconds(2));
        stats.Record(DemoTarget.V2, withHeader: true, succeeded: true, TimeSpan.FromMilliseconds(7));
        stats.Record(DemoTarget.Proxy, withHeader: false, succeeded: false, TimeSpan.FromMilliseconds(1));
        time.Now += TimeSpan.TicksPerSecond;
        var output = new StringWriter();

        await new DemoReport(output, new DemoOptions { Json = true }).WriteIntervalAsync(stats.Snapshot()).WaitAsync(TimeSpan.FromSeconds(5));

        using var doc = System.Text.Json.JsonDocument.Parse(output.ToString());
        var root = doc.RootElement;
        Assert.Equal("interval", root.GetProperty("type").GetString());
        Assert.Equal(1, root.GetProperty("targets").GetProperty("v1").GetProperty("splitRequests").GetInt64());
        AssertNear(2.0, root.GetProperty("targets").GetProperty("v1").GetProperty("latencyMs").GetProperty("total").GetProperty("p50").GetDouble());
        Assert.Equal(1, root.GetProperty("targets").GetProperty("proxy").GetProperty("requests").GetInt64());
        Assert.Equal(1, root.GetProperty("split").GetProperty("requests").GetInt64());
        Assert.Equal(1.0, root.GetProperty("split").GetProperty("observed").GetProperty("v1").GetDouble());
        Assert.Equal(0.9, root.GetProperty("split").GetProperty("configured").GetProperty("v1").GetDouble());
        Assert.Equal(1, root.GetProperty("header").GetProperty("requests").GetInt64());
        Assert.Equal(1, root.GetProperty("header").GetProperty("v2").GetInt64());
    }

    [Fact]
    public void Report_Table_ShowsVersionsAndProxyRowOnlyWhenUsed()
    {
        var time = new ManualTime();
        var stats = new DemoStats(time);
        stats.Record(DemoTarget.V1, withHeader: false, succeeded: true, TimeSpan.FromMilliseconds(2));
        time.Now += TimeSpan.TicksPerSecond;
        var report = new DemoReport(new StringWriter(), new DemoOptions());

        var table = report.Table(stats.Snapshot(), summary: false);

        Assert.Matches(@"\n  v1 +1 +1 +100\.0% +100\.0% +2\.00 +2\.00 +2\.00 +2\.00 +2\.00 +2\.00\r?\n", table);
        Assert.Matches(@"\n  v2 +0 +0 +- +- +- +- +- +- +- +-\r?\n", table);
        Assert.DoesNotContain("proxy", table, StringComparison.Ordinal);
        Assert.Contains("configured hello/v1 90%, hello/v2 10%", table, StringComparison.Ordinal);
    }
}

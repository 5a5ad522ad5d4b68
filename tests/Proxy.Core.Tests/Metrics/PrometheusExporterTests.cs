using System.Diagnostics.Metrics;
using Proxy.Core.Metrics;

namespace Proxy.Core.Tests.Metrics;

public class PrometheusExporterTests
{
    [Fact]
    public void Render_CountersGaugesAndHistograms_TextExposition()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var histogram = metrics.Meter.CreateHistogram<double>("proxy_test_duration_ms", "ms", "Test durations.");
        metrics.ConnectionsOpened.Add(2, ProxyMetrics.Tags("outbound", "db"));
        metrics.ConnectionsOpened.Add(1, ProxyMetrics.Tags("outbound", "db"));
        metrics.ConnectionsOpened.Add(1, ProxyMetrics.Tags("inbound", "passthrough"));
        metrics.ConnectionsActive.Add(1, ProxyMetrics.Tags("outbound", "db"));
        metrics.ConnectionsActive.Add(-1, ProxyMetrics.Tags("outbound", "db"));
        metrics.ConnectFailures.Add(1, new("listener", "outbound"), new("service", "we\"ird"), new("cause", "refused"));
        histogram.Record(0.7);
        histogram.Record(30);

        var text = exporter.Render();

        Assert.Contains("# TYPE proxy_tcp_connections_opened_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_connections_opened_total{listener=\"outbound\",service=\"db\"} 3\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_connections_opened_total{listener=\"inbound\",service=\"passthrough\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE proxy_tcp_connections_active gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_connections_active{listener=\"outbound\",service=\"db\"} 0\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_connect_failures_total{listener=\"outbound\",service=\"we\\\"ird\",cause=\"refused\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_bucket{le=\"0.5\"} 0\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_bucket{le=\"1\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_bucket{le=\"50\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_bucket{le=\"+Inf\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_count 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_duration_ms_sum 30.7\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_OtherMeter_NotExported()
    {
        using var mine = new ProxyMetrics();
        using var other = new ProxyMetrics();
        using var exporter = new PrometheusExporter(mine.Meter);
        other.ConnectionsOpened.Add(5, ProxyMetrics.Tags("x", "y"));
        Assert.DoesNotContain("listener=\"x\"", exporter.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void Render_SixTags_EveryLabelKeptAndSeriesKeptApart()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var counter = metrics.Meter.CreateCounter<long>("proxy_test_six");
        var tags = new System.Diagnostics.TagList { { "a", "1" }, { "b", "2" }, { "c", "3" }, { "d", "4" }, { "e", "5" }, { "f", "6" } };
        counter.Add(1, in tags);
        counter.Add(1, in tags);
        tags[5] = new("f", "other");
        counter.Add(1, in tags);

        var text = exporter.Render();

        Assert.Contains("proxy_test_six_total{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_six_total{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"other\"} 1\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_HistogramWithBucketAdvice_UsesAdvisedBuckets()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var histogram = metrics.Meter.CreateHistogram("proxy_test_seconds", "s", "Test.", tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.1] });
        histogram.Record(0.0002);
        histogram.Record(0.05);
        histogram.Record(3);

        var text = exporter.Render();

        Assert.Contains("proxy_test_seconds_bucket{le=\"0.001\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_seconds_bucket{le=\"0.1\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_seconds_bucket{le=\"+Inf\"} 3\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("proxy_test_seconds_bucket{le=\"0.5\"}", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Record_ExistingSeries_AllocatesNothing()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var histogram = metrics.Meter.CreateHistogram<double>("proxy_test_alloc_ms");
        var tags = new System.Diagnostics.TagList { { "listener", "outbound" }, { "service", "db" }, { "route", "r" }, { "class", "2xx" }, { "error", "" } };
        metrics.ConnectionsOpened.Add(1, in tags);
        histogram.Record(1, in tags);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            metrics.ConnectionsOpened.Add(1, in tags);
            histogram.Record(i, in tags);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Record_EqualValuesFromDifferentObjects_OneSeries()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var counter = metrics.Meter.CreateCounter<long>("proxy_test_identity");
        counter.Add(1, new KeyValuePair<string, object?>("service", "db"));
        for (var i = 0; i < 5000; i++)
        {
            // A fresh string each time (past the identity map's cap), and boxed numbers: still one series each.
            counter.Add(1, new KeyValuePair<string, object?>("service", new string("db".AsSpan())));
            counter.Add(1, new KeyValuePair<string, object?>("port", 8080));
        }

        counter.Add(1, new KeyValuePair<string, object?>("service", "db"));

        var text = exporter.Render();
        Assert.Contains("proxy_test_identity_total{service=\"db\"} 5002\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_identity_total{port=\"8080\"} 5000\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_ObservableInstruments_PolledAndReportedAsTheirCurrentValue()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        long total = 100;
        metrics.Meter.CreateObservableCounter("proxy_test_observed", () => total, "By", "Observed total.");
        metrics.Meter.CreateObservableGauge("proxy_test_level", () => 7L, "{item}", "Observed level.");

        var first = exporter.Render();
        total = 250;
        var second = exporter.Render();

        Assert.Contains("proxy_test_observed_total 100\n", first, StringComparison.Ordinal);
        Assert.Contains("proxy_test_observed_total 250\n", second, StringComparison.Ordinal);
        Assert.Contains("# TYPE proxy_test_level gauge\n", second, StringComparison.Ordinal);
        Assert.Contains("proxy_test_level 7\n", second, StringComparison.Ordinal);
        Assert.Contains("proxy_process_allocated_bytes_total ", second, StringComparison.Ordinal);
    }
    [Fact]
    public void Record_AlternatingAndEqualByValueTags_EachMeasurementInItsSeries()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var counter = metrics.Meter.CreateCounter<long>("proxy_test_alternating");
        var a = "route-a";
        var b = "route-b";
        for (var i = 0; i < 5; i++)
        {
            // The same tag objects twice in a row (the last-series fast path), then other objects, then values equal
            // to an earlier series' but built anew (found by value, not by identity).
            counter.Add(1, new KeyValuePair<string, object?>("route", a));
            counter.Add(1, new KeyValuePair<string, object?>("route", a));
            counter.Add(10, new KeyValuePair<string, object?>("route", b));
            counter.Add(100, new KeyValuePair<string, object?>("route", new string(a.AsSpan())));
        }

        var text = exporter.Render();
        Assert.Contains("proxy_test_alternating_total{route=\"route-a\"} 510\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_test_alternating_total{route=\"route-b\"} 50\n", text, StringComparison.Ordinal);
    }
}

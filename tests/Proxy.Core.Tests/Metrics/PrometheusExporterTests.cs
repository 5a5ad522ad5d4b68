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
}

using System.Diagnostics.Metrics;
using Proxy.Core.Metrics;
using Proxy.Http.Forwarding;
using Proxy.Http.Telemetry;
using static Proxy.Http.Tests.Telemetry.TelemetryTestHelpers;

namespace Proxy.Http.Tests.Telemetry;

public class HttpTelemetryTests
{
    [Fact]
    public void OnRequestCompleted_MixedOutcomes_CountsByStatusClassAndError()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);

        telemetry.OnRequestRouted("outbound", "api", "r1");
        telemetry.OnRequestCompleted(Ok());
        telemetry.OnRequestRouted("outbound", "api", "r1");
        telemetry.OnRequestCompleted(Ok());
        telemetry.OnRequestRouted("outbound", "api", "r1");
        telemetry.OnRequestCompleted(ProxyMade(503, ProxyErrors.NoEndpoint, routed: true));
        telemetry.OnRequestCompleted(ProxyMade(404, ProxyErrors.NoRoute, routed: false, service: "unknown", route: ""));
        telemetry.OnRequestRouted("outbound", "api", "r1");
        telemetry.OnRequestCompleted(ProxyMade(0, ProxyErrors.ClientClosed, routed: true) with { ProxyMade = false });

        var text = exporter.Render();

        Assert.Contains("# TYPE proxy_http_requests_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_requests_total{listener=\"outbound\",service=\"api\",route=\"r1\",status_class=\"2xx\",error=\"\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_requests_total{listener=\"outbound\",service=\"api\",route=\"r1\",status_class=\"5xx\",error=\"no_endpoint\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_requests_total{listener=\"outbound\",service=\"unknown\",route=\"\",status_class=\"4xx\",error=\"no_route\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_requests_total{listener=\"outbound\",service=\"api\",route=\"r1\",status_class=\"none\",error=\"client_closed\"} 1\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestCompleted_Durations_FallIntoSecondBuckets()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);

        telemetry.OnRequestCompleted(Ok(ms: 0.3) with { Routed = false });
        telemetry.OnRequestCompleted(Ok(ms: 20) with { Routed = false });
        telemetry.OnRequestCompleted(Ok(ms: 12_000) with { Routed = false });

        var text = exporter.Render();
        const string Labels = "listener=\"outbound\",service=\"api\",route=\"r1\",status_class=\"2xx\"";
        Assert.Contains("# TYPE proxy_http_request_duration_seconds histogram\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_bucket{{{Labels},le=\"0.0005\"}} 1\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_bucket{{{Labels},le=\"0.01\"}} 1\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_bucket{{{Labels},le=\"0.025\"}} 2\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_bucket{{{Labels},le=\"10\"}} 2\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_bucket{{{Labels},le=\"+Inf\"}} 3\n", text, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_request_duration_seconds_count{{{Labels}}} 3\n", text, StringComparison.Ordinal);

        // Upstream latency is half the duration in these records: 0.15 ms, 10 ms, 6 s.
        Assert.Contains("proxy_http_upstream_duration_seconds_bucket{service=\"api\",le=\"0.0005\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_upstream_duration_seconds_bucket{service=\"api\",le=\"0.01\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_upstream_duration_seconds_bucket{service=\"api\",le=\"5\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_upstream_duration_seconds_count{service=\"api\"} 3\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestCompleted_NoUpstreamResponse_NoUpstreamSample()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);

        telemetry.OnRequestCompleted(ProxyMade(502, ProxyErrors.UpstreamRefused, routed: false));

        var text = exporter.Render();
        Assert.Contains("proxy_http_request_duration_seconds_count{", text, StringComparison.Ordinal);
        Assert.DoesNotContain("proxy_http_upstream_duration_seconds_count", text, StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestRouted_ThenCompleted_InFlightReturnsToZero()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);
        const string Series = "proxy_http_requests_in_flight{listener=\"inbound\",service=\"db\"} ";

        telemetry.OnRequestRouted("inbound", "db", "");
        telemetry.OnRequestRouted("inbound", "db", "");
        Assert.Contains(Series + "2\n", exporter.Render(), StringComparison.Ordinal);

        telemetry.OnRequestCompleted(Ok(listener: "inbound", service: "db", route: ""));
        Assert.Contains(Series + "1\n", exporter.Render(), StringComparison.Ordinal);

        telemetry.OnRequestCompleted(ProxyMade(504, ProxyErrors.ResponseTimeout, routed: true, service: "db", route: "") with { Listener = "inbound" });
        var text = exporter.Render();
        Assert.Contains("# TYPE proxy_http_requests_in_flight gauge\n", text, StringComparison.Ordinal);
        Assert.Contains(Series + "0\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestCompleted_NotRouted_LeavesInFlightAlone()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);

        telemetry.OnRequestCompleted(ProxyMade(400, ProxyErrors.BadRequest, routed: false, service: "unknown", route: ""));

        Assert.DoesNotContain("proxy_http_requests_in_flight{", exporter.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestCompleted_Bodies_CountsBytesPerService()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);

        telemetry.OnRequestCompleted(Ok() with { Routed = false, RequestBytes = 100, ResponseBytes = 1000 });
        telemetry.OnRequestCompleted(Ok() with { Routed = false, RequestBytes = 20, ResponseBytes = 0 });

        var text = exporter.Render();
        Assert.Contains("proxy_http_request_body_bytes_total{listener=\"outbound\",service=\"api\"} 120\n", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_response_body_bytes_total{listener=\"outbound\",service=\"api\"} 1000\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void OnRequestCompleted_ThroughMeterListener_TagsAreInternedConstants()
    {
        using var metrics = new ProxyMetrics();
        var telemetry = new HttpTelemetry(metrics);
        var seen = new List<(long Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument, metrics.HttpRequests))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>();
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            seen.Add((value, copy));
        });
        listener.Start();

        telemetry.OnRequestCompleted(ProxyMade(502, new string("upstream_reset".AsSpan()), routed: false));

        var (value, tags) = Assert.Single(seen);
        Assert.Equal(1, value);
        Assert.Equal(["listener", "service", "route", "status_class", "error"], tags.Keys);
        Assert.Same(ProxyErrors.UpstreamReset, tags["error"]);
        Assert.Same("5xx", tags["status_class"]);
    }

    [Theory]
    [InlineData(0, "none")]
    [InlineData(99, "none")]
    [InlineData(100, "1xx")]
    [InlineData(101, "1xx")]
    [InlineData(200, "2xx")]
    [InlineData(304, "3xx")]
    [InlineData(499, "4xx")]
    [InlineData(503, "5xx")]
    [InlineData(599, "5xx")]
    [InlineData(600, "none")]
    public void StatusClass_Code_Class(int status, string expected) => Assert.Equal(expected, HttpTelemetry.StatusClass(status));

    [Theory]
    [InlineData(null, "")]
    [InlineData("", "")]
    [InlineData("no_route", "no_route")]
    [InlineData("pool_exhausted", "pool_exhausted")]
    [InlineData("upstream_protocol", "upstream_protocol")]
    [InlineData("deadline_exceeded", "deadline_exceeded")]
    [InlineData("something new", "other")]
    public void ErrorTag_Reason_BoundedValue(string? error, string expected) => Assert.Equal(expected, HttpTelemetry.ErrorTag(error));

    [Fact]
    public void OnRequestCompleted_ExistingSeriesWithExporter_AllocatesNothing()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var telemetry = new HttpTelemetry(metrics);
        RoundTrip(telemetry, 10); // creates the series, JITs the path

        var before = GC.GetAllocatedBytesForCurrentThread();
        RoundTrip(telemetry, 1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Contains("status_class=\"2xx\",error=\"\"} 1010\n", exporter.Render(), StringComparison.Ordinal);
    }

    private static void RoundTrip(HttpTelemetry telemetry, int count)
    {
        for (var i = 0; i < count; i++)
        {
            telemetry.OnRequestRouted("outbound", "api", "r1");
            telemetry.OnRequestCompleted(Ok() with { RequestBytes = 10 });
        }
    }
}

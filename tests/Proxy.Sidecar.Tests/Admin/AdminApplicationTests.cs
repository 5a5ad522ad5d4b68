using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Configuration;
using Proxy.Core.Metrics;
using Proxy.Sidecar.Admin;

namespace Proxy.Sidecar.Tests.Admin;

public class AdminApplicationTests
{
    private static async Task<(int Status, string Body)> GetAsync(AdminApplication app, string path, string method = "GET")
    {
        var features = new FeatureCollection();
        features.Set<IHttpRequestFeature>(new HttpRequestFeature { Method = method, Path = path });
        var response = new HttpResponseFeature();
        features.Set<IHttpResponseFeature>(response);
        var body = new MemoryStream();
        features.Set<IHttpResponseBodyFeature>(new StreamResponseBodyFeature(body));
        await app.ProcessRequestAsync(features).WaitAsync(TimeSpan.FromSeconds(10));
        await features.Get<IHttpResponseBodyFeature>()!.CompleteAsync();
        return (response.StatusCode, Encoding.UTF8.GetString(body.ToArray()));
    }

    [Fact]
    public async Task Ready_BeforeListenersBound_503_After_200()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var lifecycle = new SidecarLifecycle(metrics.Meter);
        var readiness = lifecycle.Readiness;
        var app = new AdminApplication(new ProxyConfig(), lifecycle, exporter);

        Assert.Equal((503, "not ready: listeners are still binding\n"), await GetAsync(app, "/ready"));
        readiness.MarkReady();
        Assert.Equal((200, "ready\n"), await GetAsync(app, "/ready"));
    }

    [Fact]
    public async Task WrongMethod_405_NamesTheMethod()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var lifecycle = new SidecarLifecycle(metrics.Meter);
        var app = new AdminApplication(new ProxyConfig(), lifecycle, exporter);
        Assert.Equal((405, "POST is not allowed on /metrics; use GET\n"), await GetAsync(app, "/metrics", "POST"));
    }

    [Theory]
    [InlineData("/drain")]
    [InlineData("/quitquitquit")]
    public async Task StopEndpoints_Get_405_AndNoStop(string path)
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var lifecycle = new SidecarLifecycle(metrics.Meter);
        lifecycle.Readiness.MarkReady();
        var app = new AdminApplication(new ProxyConfig(), lifecycle, exporter);
        Assert.Equal((405, $"GET is not allowed on {path}; use POST\n"), await GetAsync(app, path));
        Assert.False(lifecycle.StopRequested.IsCompleted);
        Assert.Equal((200, "ready\n"), await GetAsync(app, "/ready"));
    }

    [Theory]
    [InlineData("/drain", "draining: ", "up to 25 s")]
    [InlineData("/quitquitquit", "quitting: ", "up to 5 s")]
    public async Task StopEndpoints_Post_RequestStop_ReadyTurns503AtOnce(string path, string start, string bound)
    {
        var reason = path == "/drain" ? StopReason.Drain : StopReason.Quit;
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var lifecycle = new SidecarLifecycle(metrics.Meter);
        lifecycle.Readiness.MarkReady();
        var app = new AdminApplication(new ProxyConfig(), lifecycle, exporter);

        var (status, body) = await GetAsync(app, path, "POST");
        Assert.Equal(200, status);
        Assert.StartsWith(start, body, StringComparison.Ordinal);
        Assert.Contains(bound, body, StringComparison.Ordinal);
        Assert.Equal(reason, await lifecycle.StopRequested.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal((503, "not ready: draining\n"), await GetAsync(app, "/ready"));

        // A second request changes nothing: the first reason stands.
        Assert.Equal((200, "already draining\n"), await GetAsync(app, path == "/drain" ? "/quitquitquit" : "/drain", "POST"));
        Assert.Equal(reason, await lifecycle.StopRequested.WaitAsync(TimeSpan.FromSeconds(10)));
    }
}

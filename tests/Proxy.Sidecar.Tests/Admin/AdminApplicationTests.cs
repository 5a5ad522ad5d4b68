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
        var readiness = new Readiness();
        var app = new AdminApplication(new ProxyConfig(), readiness, exporter);

        Assert.Equal((503, "not ready: listeners are still binding\n"), await GetAsync(app, "/ready"));
        readiness.MarkReady();
        Assert.Equal((200, "ready\n"), await GetAsync(app, "/ready"));
    }

    [Fact]
    public async Task WrongMethod_405_NamesTheMethod()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        var app = new AdminApplication(new ProxyConfig(), new Readiness(), exporter);
        Assert.Equal((405, "POST is not allowed on /metrics; use GET\n"), await GetAsync(app, "/metrics", "POST"));
    }
}

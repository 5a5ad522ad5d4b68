using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Configuration;
using Proxy.Core.Metrics;

namespace Proxy.Sidecar.Admin;

/// <summary>Set once every listener is bound; read by /ready.</summary>
internal sealed class Readiness
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public void MarkReady() => _ready = true;
}

/// <summary>
/// The admin listener's HTTP application (Kestrel's HTTP/1.1 stack, loopback only, never on the data path):
/// <list type="bullet">
/// <item><c>GET /ready</c>: 200 once every listener is bound, 503 before.</item>
/// <item><c>GET /metrics</c>: Prometheus text exposition of the proxy's instruments.</item>
/// <item><c>GET /config</c>: the effective configuration as JSON, in the config file's schema.</item>
/// </list>
/// </summary>
internal sealed class AdminApplication(ProxyConfig config, Readiness readiness, PrometheusExporter exporter) : IHttpApplication<IFeatureCollection>
{
    private readonly byte[] _configJson = Encoding.UTF8.GetBytes(ConfigJson.ToJson(config) + "\n");

    public IFeatureCollection CreateContext(IFeatureCollection contextFeatures) => contextFeatures;

    public void DisposeContext(IFeatureCollection context, Exception? exception)
    {
    }

    public Task ProcessRequestAsync(IFeatureCollection context)
    {
        var request = context.Get<IHttpRequestFeature>()!;
        var path = request.Path;
        var isGet = request.Method is "GET" or "HEAD";
        return path switch
        {
            "/ready" when isGet => readiness.IsReady
                ? RespondAsync(context, 200, "text/plain; charset=utf-8", "ready\n"u8.ToArray())
                : RespondAsync(context, 503, "text/plain; charset=utf-8", "not ready: listeners are still binding\n"u8.ToArray()),
            "/metrics" when isGet => RespondAsync(context, 200, "text/plain; version=0.0.4; charset=utf-8", Encoding.UTF8.GetBytes(exporter.Render())),
            "/config" when isGet => RespondAsync(context, 200, "application/json", _configJson),
            "/ready" or "/metrics" or "/config" => RespondAsync(context, 405, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes($"{request.Method} is not allowed on {path}; use GET\n")),
            _ => RespondAsync(context, 404, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes($"no admin endpoint at {path}; try /ready, /metrics or /config\n")),
        };
    }

    private static async Task RespondAsync(IFeatureCollection context, int status, string contentType, byte[] body)
    {
        var response = context.Get<IHttpResponseFeature>()!;
        response.StatusCode = status;
        response.Headers.ContentType = contentType;
        response.Headers.ContentLength = body.Length;
        if (context.Get<IHttpRequestFeature>()!.Method != "HEAD")
        {
            await context.Get<IHttpResponseBodyFeature>()!.Writer.WriteAsync(body);
        }
    }
}

using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Configuration;
using Proxy.Core.Metrics;

namespace Proxy.Sidecar.Admin;

/// <summary>
/// The admin listener's HTTP application (Kestrel's HTTP/1.1 stack, loopback only, never on the data path):
/// <list type="bullet">
/// <item><c>GET /ready</c>: 200 once every listener is bound, 503 before and from the moment a drain is asked for.</item>
/// <item><c>GET /metrics</c>: Prometheus text exposition of the proxy's instruments.</item>
/// <item><c>GET /config</c>: the effective configuration as JSON, in the config file's schema.</item>
/// <item><c>GET /clusters</c>: services, their endpoints, load, health and ejections as JSON (<c>?format=text</c>: Envoy's text lines).</item>
/// <item><c>POST /drain</c>: graceful drain, then exit (as on SIGTERM; see <see cref="SidecarLifecycle"/>).</item>
/// <item><c>POST /quitquitquit</c>: the same drain bounded by <see cref="SidecarLifecycle.QuitTimeout"/>, then exit (jobs).</item>
/// </list>
/// The admin listener keeps answering during the drain; it closes when the process exits.
/// </summary>
internal sealed class AdminApplication(ProxyConfig config, SidecarLifecycle lifecycle, PrometheusExporter exporter) : IHttpApplication<IFeatureCollection>
{
    private const string Text = "text/plain; charset=utf-8";

    private readonly byte[] _configJson = Encoding.UTF8.GetBytes(ConfigJson.ToJson(config) + "\n");

    /// <summary>Renders <c>/clusters</c>; null: the endpoint answers 404.</summary>
    public ClustersReport? Clusters { get; init; }

    public IFeatureCollection CreateContext(IFeatureCollection contextFeatures) => contextFeatures;

    public void DisposeContext(IFeatureCollection context, Exception? exception)
    {
    }

    public Task ProcessRequestAsync(IFeatureCollection context)
    {
        var request = context.Get<IHttpRequestFeature>()!;
        var path = request.Path;
        var isGet = request.Method is "GET" or "HEAD";
        var isPost = request.Method == "POST";
        return path switch
        {
            "/ready" when isGet => Ready(context),
            "/metrics" when isGet => RespondAsync(context, 200, "text/plain; version=0.0.4; charset=utf-8", Encoding.UTF8.GetBytes(exporter.Render())),
            "/config" when isGet => RespondAsync(context, 200, "application/json", _configJson),
            "/clusters" when isGet && Clusters is not null => RespondClusters(context, Clusters),
            "/drain" when isPost => Stop(context, StopReason.Drain),
            "/quitquitquit" when isPost => Stop(context, StopReason.Quit),
            "/ready" or "/metrics" or "/config" or "/clusters" => NotAllowed(context, path, "GET"),
            "/drain" or "/quitquitquit" => NotAllowed(context, path, "POST"),
            _ => RespondAsync(context, 404, Text, Encoding.UTF8.GetBytes($"no admin endpoint at {path}; try /ready, /metrics, /config, /clusters, POST /drain or POST /quitquitquit\n")),
        };
    }

    private static Task RespondClusters(IFeatureCollection context, ClustersReport clusters)
    {
        var query = context.Get<IHttpRequestFeature>()!.QueryString;
        return query.Contains("format=text", StringComparison.Ordinal)
            ? RespondAsync(context, 200, Text, Encoding.UTF8.GetBytes(clusters.RenderText()))
            : RespondAsync(context, 200, "application/json", Encoding.UTF8.GetBytes(clusters.RenderJson() + "\n"));
    }

    private Task Ready(IFeatureCollection context)
    {
        var readiness = lifecycle.Readiness;
        return readiness.IsReady ? RespondAsync(context, 200, Text, "ready\n"u8.ToArray())
            : readiness.IsDraining ? RespondAsync(context, 503, Text, "not ready: draining\n"u8.ToArray())
            : RespondAsync(context, 503, Text, "not ready: listeners are still binding\n"u8.ToArray());
    }

    private Task Stop(IFeatureCollection context, StopReason reason)
    {
        var first = lifecycle.RequestStop(reason);
        var message = first
            ? $"{(reason == StopReason.Quit ? "quitting" : "draining")}: /ready answers 503, listeners stop accepting, open connections get up to {SidecarLifecycle.Timeout(reason, config.DrainTimeout).TotalSeconds:0.###} s to finish, then the process exits\n"
            : "already draining\n";
        return RespondAsync(context, 200, Text, Encoding.UTF8.GetBytes(message));
    }

    private static Task NotAllowed(IFeatureCollection context, string path, string allowed)
    {
        var request = context.Get<IHttpRequestFeature>()!;
        context.Get<IHttpResponseFeature>()!.Headers.Allow = allowed == "GET" ? "GET, HEAD" : allowed;
        return RespondAsync(context, 405, Text, Encoding.UTF8.GetBytes($"{request.Method} is not allowed on {path}; use {allowed}\n"));
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

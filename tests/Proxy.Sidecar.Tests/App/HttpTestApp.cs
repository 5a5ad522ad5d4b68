using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.Tests.App;

/// <summary>
/// A small HTTP/1.1 app on 127.0.0.1:0 (Kestrel's own HTTP stack, the way a real service would answer). Every
/// response carries <c>x-app: name</c> and <c>x-client: remote-ip</c>; the body is <c>name METHOD target</c> followed
/// by the request's header lines (<c>name: value</c>), so tests can see what the proxy forwarded.
/// </summary>
internal sealed class HttpTestApp : IAsyncDisposable
{
    private readonly WebApplication _app;

    private HttpTestApp(WebApplication app, IPEndPoint endPoint)
    {
        _app = app;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    /// <param name="name">The app's name in responses.</param>
    /// <param name="http2Only">Serve HTTP/2 with prior knowledge (h2c) only; responses then also carry <c>x-protocol</c>.</param>
    public static async Task<HttpTestApp> StartAsync(string name, bool http2Only = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0, l =>
        {
            if (http2Only)
            {
                l.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2;
            }
        }));
        var app = builder.Build();
        app.Run(async context =>
        {
            var request = context.Request;
            context.Response.Headers["x-app"] = name;
            context.Response.Headers["x-client"] = context.Connection.RemoteIpAddress?.ToString();
            context.Response.Headers["x-protocol"] = request.Protocol;
            if (request.Path == "/status" && int.TryParse(request.Query["code"], out var code))
            {
                context.Response.StatusCode = code;
                return;
            }

            var text = new System.Text.StringBuilder($"{name} {request.Method} {request.Path}{request.QueryString}\n");
            foreach (var (key, value) in request.Headers)
            {
                text.Append(key.ToLowerInvariant()).Append(": ").Append(value.ToString()).Append('\n');
            }

            await context.Response.WriteAsync(text.ToString());
        });
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var uri = new Uri(address);
        return new HttpTestApp(app, new IPEndPoint(IPAddress.Loopback, uri.Port));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await _app.DisposeAsync();
    }
}

using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.Tests.Tls;

/// <summary>
/// An HTTPS app on 127.0.0.1:0 (Kestrel, HTTP/1.1 and HTTP/2 by ALPN) with the given certificate. Responses carry
/// <c>x-app</c>, <c>x-protocol</c> (HTTP/1.1 or HTTP/2) and <c>x-client-cert</c> (the client certificate's subject, if any);
/// the body is <c>name METHOD path</c>.
/// </summary>
internal sealed class TlsUpstreamApp : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TlsUpstreamApp(WebApplication app, IPEndPoint endPoint)
    {
        _app = app;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<TlsUpstreamApp> StartAsync(string name, X509Certificate2 certificate, bool askClientCertificate = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0, l =>
        {
            l.Protocols = HttpProtocols.Http1AndHttp2;
            l.UseHttps(https =>
            {
                https.ServerCertificate = certificate;
                if (askClientCertificate)
                {
                    https.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.AllowCertificate;
                    https.ClientCertificateValidation = static (_, _, _) => true;
                }
            });
        }));
        var app = builder.Build();
        app.Run(async context =>
        {
            context.Response.Headers["x-app"] = name;
            context.Response.Headers["x-protocol"] = context.Request.Protocol;
            context.Response.Headers["x-client-cert"] = context.Connection.ClientCertificate?.Subject ?? "";
            await context.Response.WriteAsync($"{name} {context.Request.Method} {context.Request.Path}\n");
        });
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TlsUpstreamApp(app, new IPEndPoint(IPAddress.Loopback, new Uri(address).Port));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await _app.DisposeAsync();
    }
}

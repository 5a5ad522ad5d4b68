using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// The Echo service (Grpc.AspNetCore) on Kestrel at 127.0.0.1:0, HTTP/2 cleartext only (prior knowledge, as gRPC
/// servers without TLS speak). Messages up to 16 MiB either way.
/// </summary>
internal sealed class GrpcTestServer : IAsyncDisposable
{
    public const int MaxMessageSize = 16 * 1024 * 1024;

    private readonly WebApplication _app;

    private GrpcTestServer(WebApplication app, IPEndPoint endPoint, CallLog calls)
    {
        _app = app;
        EndPoint = endPoint;
        Calls = calls;
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>What the server saw of each call that carried <c>x-call-id</c>.</summary>
    public CallLog Calls { get; }

    /// <param name="certificate">Serve HTTPS (HTTP/2 by ALPN) with this certificate instead of h2c (TLS tests).</param>
    public static async Task<GrpcTestServer> StartAsync(System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null)
    {
        var calls = new CallLog();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            if (certificate is not null)
            {
                listen.UseHttps(certificate);
            }
        }));
        builder.Services.AddSingleton(calls);
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = MaxMessageSize;
            o.MaxSendMessageSize = MaxMessageSize;
        });
        var app = builder.Build();
        app.MapGrpcService<EchoService>();
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new GrpcTestServer(app, new IPEndPoint(IPAddress.Loopback, new Uri(address).Port), calls);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await _app.DisposeAsync();
    }
}

using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Proxy.Core.Transport;

namespace Proxy.Core.Tests.TestSupport;

/// <summary>
/// Kestrel on 127.0.0.1:0 with OUR transport and one connection middleware (HTTP is never reached),
/// composed without a host the way the sidecar composes it.
/// </summary>
internal sealed class KestrelTestServer : IAsyncDisposable
{
    private readonly KestrelServer _server;
    private readonly SocketTransportFactory _transport;

    private KestrelTestServer(KestrelServer server, SocketTransportFactory transport, IPEndPoint endPoint)
    {
        _server = server;
        _transport = transport;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<KestrelTestServer> StartAsync(Func<ConnectionContext, Task> handler, SocketTransportOptions? options = null)
    {
        var kestrelOptions = new KestrelServerOptions();
        ListenOptions? listen = null;
        kestrelOptions.Listen(new IPEndPoint(IPAddress.Loopback, 0), lo =>
        {
            listen = lo;
            lo.Use(_ => ctx => handler(ctx));
        });
        var transport = new SocketTransportFactory(options, NullLoggerFactory.Instance);
        var server = new KestrelServer(Options.Create(kestrelOptions), transport, NullLoggerFactory.Instance);
        await server.StartAsync(new UnreachableApplication(), CancellationToken.None).WaitAsync(TestTimeouts.Short);
        return new KestrelTestServer(server, transport, listen!.IPEndPoint!);
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _server.StopAsync(stop.Token).WaitAsync(TestTimeouts.Short);
        _server.Dispose();
        _transport.Dispose();
    }

    private sealed class UnreachableApplication : IHttpApplication<object>
    {
        public object CreateContext(IFeatureCollection contextFeatures) => throw new InvalidOperationException("HTTP must not be reached.");

        public void DisposeContext(object context, Exception? exception)
        {
        }

        public Task ProcessRequestAsync(object context) => throw new InvalidOperationException("HTTP must not be reached.");
    }
}

using System.Net;
using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using KestrelSockets = Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Proxy.Sidecar.Demo;

/// <summary>How one demo version behaves.</summary>
internal sealed record DemoVersionBehavior(string Version, TimeSpan ExtraDelay, double FailureRate)
{
    /// <summary>v1: answers at once, never fails.</summary>
    public static DemoVersionBehavior V1 { get; } = new("v1", TimeSpan.Zero, 0);

    /// <summary>v2, the canary: 5 ms slower and answers 2% of requests with 503, so the statistics differ visibly.</summary>
    public static DemoVersionBehavior V2 { get; } = new("v2", TimeSpan.FromMilliseconds(5), 0.02);

    public string Describe() =>
        ExtraDelay == TimeSpan.Zero && FailureRate == 0
            ? "answers at once, never fails"
            : FormattableString.Invariant($"+{ExtraDelay.TotalMilliseconds:0} ms per request, {FailureRate:0%} answered 503");
}

/// <summary>
/// The two versions of the demo's <c>hello</c> service: tiny HTTP/1.1 servers (Kestrel with its stock socket
/// transport and a plain request handler: no MVC, no reflection) on 127.0.0.1, port chosen by the system.
/// Each answers <c>hello from vN</c> with the header <c>x-version: vN</c>, also on its failures.
/// </summary>
internal sealed class DemoUpstreams : IAsyncDisposable
{
    private readonly List<(KestrelServer Server, KestrelSockets.SocketTransportFactory Transport)> _servers = [];

    private DemoUpstreams()
    {
    }

    public IPEndPoint V1 { get; private set; } = null!;

    public IPEndPoint V2 { get; private set; } = null!;

    public static async Task<DemoUpstreams> StartAsync(ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var upstreams = new DemoUpstreams();
        try
        {
            upstreams.V1 = await upstreams.StartOneAsync(DemoVersionBehavior.V1, loggerFactory, cancellationToken);
            upstreams.V2 = await upstreams.StartOneAsync(DemoVersionBehavior.V2, loggerFactory, cancellationToken);
            return upstreams;
        }
        catch
        {
            await upstreams.DisposeAsync();
            throw;
        }
    }

    private async Task<IPEndPoint> StartOneAsync(DemoVersionBehavior behavior, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var options = new KestrelServerOptions { AddServerHeader = false };
        ListenOptions? bound = null;
        options.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            bound = listen;
        });
        var transport = new KestrelSockets.SocketTransportFactory(Options.Create(new KestrelSockets.SocketTransportOptions()), loggerFactory);
        var server = new KestrelServer(Options.Create(options), transport, loggerFactory);
        _servers.Add((server, transport));
        await server.StartAsync(new VersionApplication(behavior), cancellationToken);

        // Kestrel writes the bound port back into the listen options once the endpoint is bound.
        return (IPEndPoint)bound!.EndPoint;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (server, _) in _servers)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await server.StopAsync(cts.Token);
            server.Dispose();
        }

        _servers.Clear();
    }

    /// <summary>The request handler of one version.</summary>
    private sealed class VersionApplication(DemoVersionBehavior behavior) : IHttpApplication<IFeatureCollection>
    {
        private readonly byte[] _body = Encoding.ASCII.GetBytes($"hello from {behavior.Version}\n");
        private readonly byte[] _failure = Encoding.ASCII.GetBytes($"{behavior.Version} is having a bad moment (simulated 503)\n");

        public IFeatureCollection CreateContext(IFeatureCollection contextFeatures) => contextFeatures;

        public void DisposeContext(IFeatureCollection context, Exception? exception)
        {
        }

        public async Task ProcessRequestAsync(IFeatureCollection context)
        {
            if (behavior.ExtraDelay > TimeSpan.Zero)
            {
                await Task.Delay(behavior.ExtraDelay);
            }

            var fail = behavior.FailureRate > 0 && Random.Shared.NextDouble() < behavior.FailureRate;
            var body = fail ? _failure : _body;
            var response = context.Get<IHttpResponseFeature>()!;
            response.StatusCode = fail ? 503 : 200;
            response.Headers["x-version"] = behavior.Version;
            response.Headers.ContentType = "text/plain; charset=utf-8";
            response.Headers.ContentLength = body.Length;
            if (context.Get<IHttpRequestFeature>()!.Method != "HEAD")
            {
                await context.Get<IHttpResponseBodyFeature>()!.Writer.WriteAsync(body);
            }
        }
    }
}

using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// An in-process sidecar for the circuit breaker and rate limit tests: one service behind an explicit HTTP listener
/// "edge" (HTTP/1.1 and h2c), admin on a loopback port, optional routes, access log and pool size. Disposed with the
/// test's other resources.
/// </summary>
internal static class LimitsSidecar
{
    public static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(20);

    /// <param name="connectionHook">Called first for every accepted connection (e.g. to give it a verified peer identity).</param>
    public static async Task<SidecarHost> StartAsync(List<IAsyncDisposable> disposables, ServiceConfig service, RouteConfig[]? routes = null, HttpConfig? http = null,
        ListenerProtocol protocol = ListenerProtocol.Http, Action<Microsoft.AspNetCore.Connections.ConnectionContext>? connectionHook = null, TcpConfig? tcp = null)
    {
        routes ??= [];
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Services = [service],
            Http = http ?? new HttpConfig(),
            Tcp = tcp ?? new TcpConfig(),
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), routes.Length == 0 ? service.Name : "") { Protocol = protocol, Routes = routes }],
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(new IPEndPoint(IPAddress.Loopback, 9)))
        {
            ConnectionHookForTests = connectionHook,
        };
        disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(TestTimeout);
        return host;
    }

    public static HttpClient Client(Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>>? connect = null)
        => new(new SocketsHttpHandler { UseProxy = false, ConnectCallback = connect }) { Timeout = TestTimeout };

    public static Uri Url(SidecarHost host, string path) => new($"http://{host.AddressOf("edge")}{path}");

    public static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = Client();
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics")).WaitAsync(TestTimeout);
    }

    /// <summary>Polls /metrics until it contains <paramref name="line"/> (gauges move as requests come and go).</summary>
    public static async Task WaitForMetricAsync(SidecarHost host, string line)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        string metrics;
        while (!(metrics = await MetricsAsync(host)).Contains(line, StringComparison.Ordinal))
        {
            Assert.True(waited.Elapsed < TestTimeout, $"/metrics never showed {line}:\n{metrics}");
            await Task.Delay(10);
        }
    }

    /// <summary>
    /// A unary gRPC call by hand over h2c (HttpClient), answered trailers-only by the proxy: returns grpc-status,
    /// the decoded grpc-message and x-proxy-error.
    /// </summary>
    public static async Task<(int Status, string Message, string? Reason)> GrpcCallAsync(SidecarHost host)
    {
        using var http = Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, Url(host, "/proxy.tests.echo.Echo/Unary"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent([0, 0, 0, 0, 0]),
        };
        request.Content.Headers.ContentType = new("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(TestTimeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        var status = int.Parse(Assert.Single(response.Headers.GetValues("grpc-status")), System.Globalization.CultureInfo.InvariantCulture);
        var message = Uri.UnescapeDataString(Assert.Single(response.Headers.GetValues("grpc-message")));
        var reason = response.Headers.TryGetValues("x-proxy-error", out var values) ? values.Single() : null;
        return (status, message, reason);
    }
}

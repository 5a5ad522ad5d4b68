using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Core.Transport;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.App;

/// <summary>
/// HTTP/1.1 forwarding wired into the composed sidecar: explicit HTTP listeners with routes, captured outbound
/// traffic to a service's virtual address (routes of the service), passthrough, inbound to the local app, and the
/// telemetry the admin listener shows. Real Kestrel apps upstream, real clients (HttpClient, curl, raw sockets).
/// </summary>
public sealed class HttpWiringTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly IPEndPoint VirtualAddress = IPEndPoint.Parse("10.96.0.10:80");
    private readonly List<IAsyncDisposable> _disposables = [];
    private HttpTestApp _v1 = null!;
    private HttpTestApp _v2 = null!;

    public async Task InitializeAsync()
    {
        _v1 = await HttpTestApp.StartAsync("v1");
        _v2 = await HttpTestApp.StartAsync("v2");
        _disposables.Add(_v1);
        _disposables.Add(_v2);
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    // The test apps speak HTTP/1.1 only: h2c clients must not be sent on as HTTP/2 ("same", the default).
    private ServiceConfig Web(params RouteConfig[] routes) => new("web", [VirtualAddress], [_v1.EndPoint, _v2.EndPoint])
    {
        UpstreamProtocol = UpstreamProtocol.Http1,
        Subsets = [new SubsetConfig("v1", [_v1.EndPoint]), new SubsetConfig("v2", [_v2.EndPoint])],
        Routes = routes,
    };

    private static RouteConfig[] AbAndCanary(int v1Weight, int v2Weight) =>
    [
        new RouteConfig
        {
            Name = "ab",
            Match = new RouteMatchConfig { Headers = [new HeaderMatchConfig("x-version", HeaderMatchKind.Exact, "v2")] },
            Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web", "v2")] },
        },
        new RouteConfig
        {
            Name = "canary",
            Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/") },
            Action = new RouteActionConfig
            {
                Destinations = [new WeightedDestinationConfig("web", "v1", v1Weight), new WeightedDestinationConfig("web", "v2", v2Weight)],
                ResponseHeaders = new HeaderMutationsConfig { Set = [new("x-route", "canary")] },
                RequestHeaders = new HeaderMutationsConfig { Add = [new("x-mesh", "yes")] },
            },
        },
    ];

    private ProxyConfig Config(IReadOnlyList<ListenerConfig> listeners, ServiceConfig? web = null, string? accessLog = null) => new()
    {
        OutboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        InboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
        Services = [web ?? Web()],
        Listeners = listeners,
        Http = new HttpConfig { AccessLog = accessLog },
    };

    private static ListenerConfig Edge(IReadOnlyList<RouteConfig> routes, string service = "")
        => new("edge", new IPEndPoint(IPAddress.Loopback, 0), service) { Protocol = ListenerProtocol.Http, Routes = routes };

    private async Task<SidecarHost> StartAsync(ProxyConfig config, IPEndPoint? originalDestination = null)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(originalDestination ?? VirtualAddress));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromMinutes(1) }) { Timeout = Timeout };

    private static Uri Url(SidecarHost host, string listener, string path = "/") => new($"http://{host.AddressOf(listener)}{path}");

    private static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = Client();
        return await http.GetStringAsync(Url(host, "admin", "/metrics"));
    }

    private static async Task<string> MetricsWhenAsync(SidecarHost host, Func<string, bool> ready)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var metrics = await MetricsAsync(host);
            if (ready(metrics) || DateTime.UtcNow > deadline)
            {
                return metrics;
            }

            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Listeners_ExplicitHttpAcceptsWithoutSocket_CapturedAndTcpWithOne()
    {
        var tcp = new ListenerConfig("tcp", new IPEndPoint(IPAddress.Loopback, 0), "web") { Protocol = ListenerProtocol.Tcp };
        var seen = new System.Collections.Concurrent.ConcurrentQueue<SocketConnection>();
        var host = new SidecarHost(Config([Edge(AbAndCanary(100, 1)), tcp]), NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(VirtualAddress))
        {
            ConnectionHookForTests = c => seen.Enqueue((SocketConnection)c),
        };
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);

        using (var http = Client())
        {
            using var explicitResponse = await http.GetAsync(Url(host, "edge", "/e")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, explicitResponse.StatusCode);
            using var capturedResponse = await http.GetAsync(Url(host, "outbound", "/c")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, capturedResponse.StatusCode);
        }

        using (var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await raw.ConnectAsync((IPEndPoint)host.AddressOf("tcp")!).WaitAsync(Timeout);
            await raw.SendAsync(Encoding.ASCII.GetBytes("GET /t HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")).WaitAsync(Timeout);
            var response = new MemoryStream();
            var buffer = new byte[4096];
            int n;
            while ((n = await raw.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout)) > 0)
            {
                response.Write(buffer, 0, n);
            }

            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(response.ToArray()), StringComparison.Ordinal);
        }

        SocketConnection On(string listener) => Assert.Single(seen, c => c.LocalEndPoint!.Equals(host.AddressOf(listener)));

        // The explicit HTTP listener serves its connections through their pipes alone: accepted without a .NET socket.
        Assert.False(On("edge").HasSocket);

        // Protocol detection and the original destination read the captured connection's socket; opaque TCP hands its
        // socket to splice.
        Assert.True(On("outbound").HasSocket);
        Assert.True(On("tcp").HasSocket);
    }

    [Fact]
    public async Task ExplicitListener_HeaderRoute_AlwaysV2AndRequestHeadersMutated()
    {
        var host = await StartAsync(Config([Edge(AbAndCanary(100, 1))]));
        using var http = Client();
        for (var i = 0; i < 20; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "edge", "/hello?x=1"));
            request.Headers.Add("x-version", "v2");
            using var response = await http.SendAsync(request).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("v2", Assert.Single(response.Headers.GetValues("x-app")));
            var body = await response.Content.ReadAsStringAsync();
            Assert.StartsWith("v2 GET /hello?x=1\n", body, StringComparison.Ordinal);
            Assert.DoesNotContain("x-mesh", body, StringComparison.Ordinal);
            Assert.False(response.Headers.Contains("x-route"));
        }

        using var canary = await http.GetAsync(Url(host, "edge", "/")).WaitAsync(Timeout);
        Assert.Equal("canary", Assert.Single(canary.Headers.GetValues("x-route")));
        Assert.Contains("x-mesh: yes", await canary.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExplicitListener_CanarySplit_WithinBinomialBounds()
    {
        var host = await StartAsync(Config([Edge(AbAndCanary(90, 10))]));
        using var http = Client();
        const int N = 1000;
        var v2 = 0;
        for (var i = 0; i < N; i++)
        {
            using var response = await http.GetAsync(Url(host, "edge", "/")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (response.Headers.GetValues("x-app").Single() == "v2")
            {
                v2++;
            }
        }

        // Binomial(1000, 0.1): mean 100, sd 9.5; 5 sd either way fails a correct split about once in 3.5 million runs.
        Assert.InRange(v2, 100 - 48, 100 + 48);
    }

    [Fact]
    public async Task ExplicitListener_NoRouteMatches_ProxyMade404ThatSaysSo()
    {
        RouteConfig[] routes =
        [
            new RouteConfig
            {
                Name = "api-only",
                Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/api") },
                Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web")] },
            },
        ];
        var host = await StartAsync(Config([Edge(routes)]));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "edge", "/other")).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("no_route", Assert.Single(response.Headers.GetValues("x-proxy-error")));
        Assert.Contains("no route", await response.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);

        using var ok = await http.GetAsync(Url(host, "edge", "/api/x")).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task ExplicitListener_EndpointRefuses_502NamesServiceAndEndpoint()
    {
        var dead = Proxy.Testing.RefusingPort.Reserve();
        var service = new ServiceConfig("dead", [], [dead]);
        var config = Config([Edge([], "dead")]) with { Services = [Web(), service] };
        var host = await StartAsync(config);
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "edge", "/")).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_refused", Assert.Single(response.Headers.GetValues("x-proxy-error")));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("dead", body, StringComparison.Ordinal);
        Assert.Contains(dead.ToString(), body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_CapturedToVirtualAddress_ServiceRoutesApply()
    {
        RouteConfig[] routes =
        [
            new RouteConfig { Name = "all-v2", Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web", "v2")] } },
        ];
        var host = await StartAsync(Config([], Web(routes)));
        using var http = Client();
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync(Url(host, "outbound", "/x")).WaitAsync(Timeout);
            Assert.Equal("v2", Assert.Single(response.Headers.GetValues("x-app")));
        }

        // The request is recorded right after its last response byte is flushed: poll until the count is there.
        var metrics = await MetricsWhenAsync(host, m => m.Contains("proxy_http_request_duration_seconds_count{listener=\"outbound\",service=\"web\",route=\"all-v2\",status_class=\"2xx\"} 5\n", StringComparison.Ordinal));
        Assert.Contains("proxy_http_requests_total{listener=\"outbound\",service=\"web\",route=\"all-v2\",status_class=\"2xx\",error=\"\"} 5\n", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_http_requests_in_flight{listener=\"outbound\",service=\"web\"} 0\n", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_http_request_duration_seconds_count{listener=\"outbound\",service=\"web\",route=\"all-v2\",status_class=\"2xx\"} 5\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_UnknownDestination_PassedThroughAsHttp()
    {
        var host = await StartAsync(Config([]), originalDestination: _v1.EndPoint);
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "outbound", "/p")).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("v1 GET /p\n", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inbound_HttpToLocalApp_DialledFromInboundPassthroughAddress()
    {
        var host = await StartAsync(Config([]), originalDestination: _v1.EndPoint);
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "inbound", "/in")).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("127.0.0.6", Assert.Single(response.Headers.GetValues("x-client")));
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(0, false)]
    [InlineData(1, false)]
    public async Task IoThreads_EachSetting_ExplicitAndCapturedTrafficAnswered(int ioThreads, bool inlineScheduling)
    {
        // --io-threads 0 is .NET's socket engine, 1 and 2 our epoll loops (with 2, a client connection and the upstream
        // connection it reuses may sit on different loops). --inline-scheduling false: completions and each new
        // connection's start go through the thread pool.
        var config = Config([Edge(AbAndCanary(100, 1))]) with { Transport = new TransportConfig { IoThreads = ioThreads, InlineScheduling = inlineScheduling } };
        var host = await StartAsync(config, originalDestination: _v1.EndPoint);
        using var http = Client();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, "edge", $"/n{i}")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using var captured = new TcpClient();
        await captured.ConnectAsync((IPEndPoint)host.AddressOf("outbound")!).WaitAsync(Timeout);
        var stream = captured.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var all = await reader.ReadToEndAsync().WaitAsync(Timeout);
        Assert.Contains("v1 GET /c\n", all, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_KeepAlive_ManyRequestsOneClientConnection()
    {
        var host = await StartAsync(Config([]), originalDestination: _v1.EndPoint);
        using var client = new TcpClient();
        await client.ConnectAsync((IPEndPoint)host.AddressOf("outbound")!).WaitAsync(Timeout);
        var stream = client.GetStream();

        // Pipelined: three requests in one write, answered in order on one connection.
        var requests = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(requests)).AsTask().WaitAsync(Timeout);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var all = await reader.ReadToEndAsync().WaitAsync(Timeout);
        var i1 = all.IndexOf("v1 GET /1\n", StringComparison.Ordinal);
        var i2 = all.IndexOf("v1 GET /2\n", StringComparison.Ordinal);
        var i3 = all.IndexOf("v1 GET /3\n", StringComparison.Ordinal);
        Assert.True(i1 >= 0 && i2 > i1 && i3 > i2, all);
    }

    [Fact]
    public async Task ExplicitListener_Curl10And11_Answered()
    {
        var host = await StartAsync(Config([Edge([], "web")]));
        foreach (var flag in new[] { "--http1.0", "--http1.1" })
        {
            var (code, output) = await RunAsync("curl", $"-s -i {flag} --max-time 20 {Url(host, "edge", "/curl")}");
            Assert.True(code == 0, output);
            Assert.Contains(" 200 ", output.Split('\n')[0], StringComparison.Ordinal);
            Assert.Contains("GET /curl", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ExplicitListener_RewriteRedirectAndDirectResponse_ThroughCurl()
    {
        var routes = RouteConfigReader.ReadJson("""
            [ { "name": "api", "match": { "path": { "segmentPrefix": "/api" } },
                "action": { "service": "web", "subset": "v1", "rewrite": { "pathPrefix": "/v2", "host": "web.internal" } } },
              { "name": "moved", "match": { "path": { "prefix": "/old/" } },
                "action": { "redirect": { "scheme": "https", "host": "www.example", "pathPrefix": "/new/", "status": 308 } } },
              { "name": "down", "match": { "path": { "exact": "/admin" } },
                "action": { "directResponse": { "status": 503, "body": "down for maintenance\n" } } } ]
            """);
        Assert.True(routes.Ok, string.Join("\n", routes.Errors));
        var log = Path.Combine(Path.GetTempPath(), $"proxy-rewrite-{Guid.NewGuid():N}.log");
        try
        {
            var host = await StartAsync(Config([Edge(routes.Routes!)], accessLog: log));

            var (code, api) = await RunAsync("curl", $"-s -i --max-time 20 {Url(host, "edge", "/api/users?id=7")}");
            Assert.True(code == 0, api);
            Assert.Contains(" 200 ", api.Split('\n')[0], StringComparison.Ordinal);
            Assert.Contains("v1 GET /v2/users?id=7", api, StringComparison.Ordinal);
            Assert.Contains("\nhost: web.internal\n", api, StringComparison.Ordinal);

            (code, var moved) = await RunAsync("curl", $"-s -i --max-time 20 {Url(host, "edge", "/old/page?x=1")}");
            Assert.True(code == 0, moved);
            Assert.Contains(" 308 ", moved.Split('\n')[0], StringComparison.Ordinal);
            Assert.Contains("location: https://www.example/new/page?x=1\r\n", moved, StringComparison.Ordinal);

            (code, var down) = await RunAsync("curl", $"-s -i --max-time 20 {Url(host, "edge", "/admin")}");
            Assert.True(code == 0, down);
            Assert.Contains(" 503 ", down.Split('\n')[0], StringComparison.Ordinal);
            Assert.EndsWith("\r\n\r\ndown for maintenance\n", down, StringComparison.Ordinal);
            Assert.DoesNotContain("x-proxy-error", down, StringComparison.OrdinalIgnoreCase);

            // The access log has the paths the client sent; the redirect and the direct response as proxy-made, without error.
            await host.DisposeAsync(); // flushes the access log
            var lines = (await File.ReadAllLinesAsync(log)).Where(l => l.Length > 0).ToArray();
            Assert.Equal(3, lines.Length);
            Assert.Contains("\"path\":\"/api/users?id=7\"", lines[0], StringComparison.Ordinal);
            Assert.Contains("\"route\":\"moved\"", lines[1], StringComparison.Ordinal);
            Assert.Contains("\"status\":308", lines[1], StringComparison.Ordinal);
            Assert.Contains("\"error\":null,\"proxy_made\":true", lines[1], StringComparison.Ordinal);
            Assert.Contains("\"status\":503", lines[2], StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(log);
        }
    }

    [Fact]
    public async Task RequestIdGenerate_AppAndAccessLogSeeTheSameId()
    {
        var log = Path.Combine(Path.GetTempPath(), $"proxy-request-id-{Guid.NewGuid():N}.log");
        try
        {
            var config = Config([Edge([], "web")], accessLog: log);
            var host = await StartAsync(config with { Http = config.Http with { RequestId = RequestIdMode.Generate } });
            using var http = Client();
            var body = await http.GetStringAsync(Url(host, "edge", "/id")).WaitAsync(Timeout);
            var line = body.Split('\n').Single(l => l.StartsWith("x-request-id: ", StringComparison.Ordinal));
            var id = line["x-request-id: ".Length..];
            Assert.Equal(4, Guid.ParseExact(id, "D").Version);

            await host.DisposeAsync(); // flushes the access log
            var entry = Assert.Single(await File.ReadAllLinesAsync(log), l => l.Length > 0);
            using var json = System.Text.Json.JsonDocument.Parse(entry);
            Assert.Equal(id, json.RootElement.GetProperty("request_id").GetString());
        }
        finally
        {
            File.Delete(log);
        }
    }

    private static HttpClient Http2Client() => new(new SocketsHttpHandler { UseProxy = false })
    {
        Timeout = Timeout,
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
    };

    [Fact]
    public async Task ExplicitListener_H2cPriorKnowledgeAndHttp11_BothServedOnOnePort()
    {
        var host = await StartAsync(Config([Edge(AbAndCanary(100, 1))]));
        using var h2 = Http2Client();
        using var h1 = Client();

        using var viaH2 = await h2.GetAsync(Url(host, "edge", "/h2")).WaitAsync(Timeout);
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "edge", "/h2ab")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Headers.Add("x-version", "v2");
        using var ab = await h2.SendAsync(request).WaitAsync(Timeout);
        using var viaH1 = await h1.GetAsync(Url(host, "edge", "/h1")).WaitAsync(Timeout);

        Assert.Equal(HttpVersion.Version20, viaH2.Version);
        // The canary route splits 100:1, so either subset may answer; the path and method must arrive intact.
        Assert.Matches("^v[12] GET /h2\n", await viaH2.Content.ReadAsStringAsync());
        Assert.Equal("canary", Assert.Single(viaH2.Headers.GetValues("x-route")));
        Assert.Equal("v2", Assert.Single(ab.Headers.GetValues("x-app")));
        Assert.Equal(HttpVersion.Version11, viaH1.Version);
        Assert.Matches("^v[12] GET /h1\n", await viaH1.Content.ReadAsStringAsync());
        var metrics = await MetricsWhenAsync(host, m => m.Contains("route=\"canary\",status_class=\"2xx\",error=\"\"} 2\n", StringComparison.Ordinal));
        Assert.Contains("proxy_http_requests_total{listener=\"edge\",service=\"web\",route=\"canary\",status_class=\"2xx\",error=\"\"} 2\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_CapturedH2c_DetectedByPrefaceAndServiceRoutesApply()
    {
        RouteConfig[] routes =
        [
            new RouteConfig { Name = "all-v2", Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web", "v2")] } },
        ];
        var host = await StartAsync(Config([], Web(routes)));
        using var h2 = Http2Client();

        for (var i = 0; i < 3; i++)
        {
            using var response = await h2.GetAsync(Url(host, "outbound", $"/cap{i}")).WaitAsync(Timeout);
            Assert.Equal(HttpVersion.Version20, response.Version);
            Assert.Equal("v2", Assert.Single(response.Headers.GetValues("x-app")));
        }
    }

    [Fact]
    public async Task ExplicitListener_Http11Client_ReachesH2cUpstream_WhenServiceSaysHttp2()
    {
        await using var h2App = await HttpTestApp.StartAsync("h2app", http2Only: true);
        var grpcish = new ServiceConfig("web", [VirtualAddress], [h2App.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http2 };
        var host = await StartAsync(Config([Edge([], "web")], grpcish));
        using var http = Client();

        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync(Url(host, "edge", $"/via-h2?i={i}")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(HttpVersion.Version11, response.Version);
            Assert.Equal("HTTP/2", Assert.Single(response.Headers.GetValues("x-protocol")));
            Assert.StartsWith($"h2app GET /via-h2?i={i}\n", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // An HTTP/2 client goes on as HTTP/2 too.
        using var h2 = Http2Client();
        using var viaH2 = await h2.GetAsync(Url(host, "edge", "/h2-to-h2")).WaitAsync(Timeout);
        Assert.Equal("HTTP/2", Assert.Single(viaH2.Headers.GetValues("x-protocol")));
    }

    [Fact]
    public async Task ExplicitListener_ServiceSaysHttp2_Http11OnlyUpstream_502UpstreamProtocol()
    {
        var h1Only = new ServiceConfig("web", [VirtualAddress], [_v1.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http2 };
        var host = await StartAsync(Config([Edge([], "web")], h1Only));
        using var http = Client();

        using var response = await http.GetAsync(Url(host, "edge", "/x")).WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("upstream_protocol", Assert.Single(response.Headers.GetValues("x-proxy-error")));
        Assert.Contains("does not speak HTTP/2", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Settings_FromConfig_AdvertisedToClients()
    {
        var config = Config([Edge([], "web")]) with { Http2 = new Http2Config { MaxConcurrentStreams = 3, InitialStreamWindow = 100_000, MaxHeaderListSize = 9000 } };
        var host = await StartAsync(config);
        using var client = new TcpClient();
        await client.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
        var stream = client.GetStream();
        await stream.WriteAsync("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);

        var header = new byte[9];
        await stream.ReadExactlyAsync(header).AsTask().WaitAsync(Timeout);
        var payload = new byte[(header[0] << 16) | (header[1] << 8) | header[2]];
        await stream.ReadExactlyAsync(payload).AsTask().WaitAsync(Timeout);
        var settings = new Dictionary<int, int>();
        for (var i = 0; i + 6 <= payload.Length; i += 6)
        {
            settings[(payload[i] << 8) | payload[i + 1]] = (payload[i + 2] << 24) | (payload[i + 3] << 16) | (payload[i + 4] << 8) | payload[i + 5];
        }

        Assert.Equal(4, header[3]);
        Assert.Equal(3, settings[3]);
        Assert.Equal(100_000, settings[4]);
        Assert.Equal(9000, settings[6]);
    }

    [Fact]
    public async Task ExplicitListener_CurlAndNghttpOverH2c_Answered()
    {
        var host = await StartAsync(Config([Edge([], "web")]));

        var (code, output) = await RunAsync("curl", $"-s -i --http2-prior-knowledge --max-time 20 {Url(host, "edge", "/curl2")}");
        Assert.True(code == 0, output);
        Assert.StartsWith("HTTP/2 200", output, StringComparison.Ordinal);
        Assert.Contains("GET /curl2", output, StringComparison.Ordinal);

        // nghttp (Debian nghttp2-client, installed by .ci/run): two concurrent streams on one connection.
        (code, output) = await RunAsync("nghttp", $"-n -v --timeout=20 {Url(host, "edge", "/a")} {Url(host, "edge", "/b")}");
        Assert.True(code == 0, output);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Count(output, @"recv \(stream_id=\d+\) :status: 200"));
    }

    [Fact]
    public async Task AccessLog_File_OneJsonLinePerRequestWithTheReason()
    {
        var path = Path.Combine(Path.GetTempPath(), $"proxy-access-{Guid.NewGuid():N}.log");
        try
        {
            RouteConfig[] routes =
            [
                new RouteConfig
                {
                    Name = "api",
                    Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/api") },
                    Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("web", "v1")] },
                },
            ];
            var host = await StartAsync(Config([Edge(routes)], accessLog: path));
            using (var http = Client())
            {
                (await http.GetAsync(Url(host, "edge", "/api/a")).WaitAsync(Timeout)).Dispose();
                (await http.GetAsync(Url(host, "edge", "/nothing")).WaitAsync(Timeout)).Dispose();
            }

            await host.DisposeAsync();
            var lines = (await File.ReadAllLinesAsync(path)).Where(l => l.Length > 0).ToArray();
            Assert.Equal(2, lines.Length);
            using var ok = System.Text.Json.JsonDocument.Parse(lines[0]);
            Assert.Equal(200, ok.RootElement.GetProperty("status").GetInt32());
            Assert.Equal("/api/a", ok.RootElement.GetProperty("path").GetString());
            Assert.Equal("web", ok.RootElement.GetProperty("service").GetString());
            using var missed = System.Text.Json.JsonDocument.Parse(lines[1]);
            Assert.Equal(404, missed.RootElement.GetProperty("status").GetInt32());
            Assert.Equal("no_route", missed.RootElement.GetProperty("error").GetString());
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Timeout);
        return (process.ExitCode, await stdout + await stderr);
    }
}

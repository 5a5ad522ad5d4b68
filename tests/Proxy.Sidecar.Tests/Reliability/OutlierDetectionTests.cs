using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using static Proxy.Sidecar.Tests.Reliability.RetryTests;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Outlier detection and active health checks through a real sidecar (explicit listener) to scripted upstreams on
/// loopback that answer 503 or refuse on command: the failing endpoint is ejected (later requests all succeed on the
/// others), comes back after its time, the max ejection percent holds; health checks take an endpoint out and bring it
/// back; <c>/clusters</c> shows it all.
/// </summary>
public sealed class OutlierDetectionTests : ReliabilityTestBase
{
    private ScriptedUpstream Upstream(string name, string defaultAction = "200") => base.Upstream(name, defaultAction);

    private Task<SidecarHost> SidecarAsync(ServiceConfig service, ListenerProtocol protocol = ListenerProtocol.Http) => EdgeAsync(service, protocol: protocol);

    private static readonly OutlierDetectionConfig Detection = new()
    {
        Consecutive5xx = 3,
        ConsecutiveLocalOriginFailure = 2,
        Interval = TimeSpan.FromMilliseconds(50),
        BaseEjectionTime = TimeSpan.FromHours(1),
        MaxEjectionTime = TimeSpan.FromHours(1),
        MaxEjectionPercent = 50,
    };

    private static ServiceConfig Service(OutlierDetectionConfig? detection, HealthCheckConfig? check, params IPEndPoint[] endpoints)
        => new("flaky", [], endpoints) { OutlierDetection = detection, HealthCheck = check };

    [Fact]
    public async Task Status503_EjectedAfterConsecutive5xx_LaterRequestsAllSucceedOnTheOther()
    {
        var bad = Upstream("bad", "503");
        var good = Upstream("good");
        var host = await SidecarAsync(Service(Detection, null, bad.EndPoint, good.EndPoint));
        using var http = Client();

        // Round-robin: bad, good, bad, good, bad (third 503 in a row: ejected), good.
        var failures = 0;
        for (var i = 0; i < 6; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            failures += response.StatusCode == HttpStatusCode.ServiceUnavailable ? 1 : 0;
        }

        Assert.Equal(3, failures);
        for (var i = 0; i < 20; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/after/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(3, bad.Requests);
        Assert.Equal(23, good.Requests);

        var endpoint = await EndpointAsync(host, bad.EndPoint);
        Assert.True(endpoint.GetProperty("ejected").GetBoolean());
        Assert.False(endpoint.GetProperty("available").GetBoolean());
        Assert.Equal(1, endpoint.GetProperty("timesEjected").GetInt32());
        Assert.Equal("consecutive-5xx", endpoint.GetProperty("lastEjectionReason").GetString());
        Assert.InRange(endpoint.GetProperty("ejectedForMs").GetDouble(), 3_500_000, 3_600_000);
        Assert.Equal(3, endpoint.GetProperty("failures").GetInt64());

        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_outlier_ejections_total{service=\"flaky\",reason=\"consecutive-5xx\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_outlier_ejected_endpoints{service=\"flaky\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Streams_503Ejected_LikeHttp1()
    {
        var bad = Upstream("bad", "503");
        var good = Upstream("good");
        var host = await SidecarAsync(Service(Detection, null, bad.EndPoint, good.EndPoint) with { UpstreamProtocol = UpstreamProtocol.Http1 });

        // h2c with prior knowledge: every request is a stream of one HTTP/2 connection, served by the same stage.
        using var http = Client();
        http.DefaultRequestVersion = HttpVersion.Version20;
        http.DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        var failures = 0;
        for (var i = 0; i < 26; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpVersion.Version20, response.Version);
            failures += response.StatusCode == HttpStatusCode.ServiceUnavailable ? 1 : 0;
        }

        Assert.Equal(3, failures);
        Assert.Equal(3, bad.Requests);
        Assert.True((await EndpointAsync(host, bad.EndPoint)).GetProperty("ejected").GetBoolean());
    }

    [Fact]
    public async Task Ejected_ComesBackAfterTheEjectionTime()
    {
        var bad = Upstream("bad", "503");
        var good = Upstream("good");
        var host = await SidecarAsync(Service(Detection with { BaseEjectionTime = TimeSpan.FromMilliseconds(300) }, null, bad.EndPoint, good.EndPoint));
        using var http = Client();
        for (var i = 0; i < 6; i++)
        {
            using var _ = await http.GetAsync(Url(host, $"/{i}"));
        }

        Assert.True((await EndpointAsync(host, bad.EndPoint)).GetProperty("ejected").GetBoolean());
        bad.Default = "200";
        await WaitUntilAsync(host, bad.EndPoint, static e => !e.GetProperty("ejected").GetBoolean());

        var before = bad.Requests;
        for (var i = 0; i < 6; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/back/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(before + 3, bad.Requests);
        var endpoint = await EndpointAsync(host, bad.EndPoint);
        Assert.Equal(1, endpoint.GetProperty("timesEjected").GetInt32());
        Assert.True(endpoint.GetProperty("available").GetBoolean());
    }

    [Fact]
    public async Task ConnectRefused_EjectedAsLocalOriginFailure()
    {
        var good = Upstream("good");
        var dead = DeadEndPoint();
        var host = await SidecarAsync(Service(Detection, null, dead, good.EndPoint));
        using var http = Client();
        var failures = 0;
        for (var i = 0; i < 24; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            failures += response.StatusCode == HttpStatusCode.OK ? 0 : 1;
        }

        // Two refused connects in a row (the proxy answered 502 to each), then nothing more goes there.
        Assert.Equal(2, failures);
        Assert.Equal(22, good.Requests);
        var endpoint = await EndpointAsync(host, dead);
        Assert.Equal("consecutive-local-origin-failure", endpoint.GetProperty("lastEjectionReason").GetString());
    }

    [Fact]
    public async Task MaxEjectionPercent_OnlyOneOfFourEjectedAt25Percent()
    {
        var bad1 = Upstream("bad1", "503");
        var bad2 = Upstream("bad2", "503");
        var good1 = Upstream("good1");
        var good2 = Upstream("good2");
        var host = await SidecarAsync(Service(Detection with { MaxEjectionPercent = 25 }, null, bad1.EndPoint, bad2.EndPoint, good1.EndPoint, good2.EndPoint));
        using var http = Client();
        for (var i = 0; i < 40; i++)
        {
            using var _ = await http.GetAsync(Url(host, $"/{i}"));
        }

        var clusters = await ClustersAsync(host);
        var ejected = clusters.GetProperty("services")[0].GetProperty("endpoints").EnumerateArray().Count(static e => e.GetProperty("ejected").GetBoolean());
        Assert.Equal(1, ejected);

        // bad1 went first (round-robin order) and is out; bad2 keeps its share: the percentage held it in.
        Assert.Equal(3, bad1.Requests);
        Assert.True(bad2.Requests > 6, $"bad2 served {bad2.Requests}");
        Assert.Matches("proxy_outlier_ejections_overflow_total\\{service=\"flaky\",reason=\"consecutive-5xx\"\\} [1-9]", await MetricsAsync(host));
    }

    [Fact]
    public async Task HttpHealthCheck_MarksAnEndpointDownAndUpAgain()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        var check = new HealthCheckConfig { Path = "/healthz", Interval = TimeSpan.FromMilliseconds(100), HealthyThreshold = 2, UnhealthyThreshold = 2 };
        var host = await SidecarAsync(Service(null, check, a.EndPoint, b.EndPoint));
        await WaitUntilAsync(host, a.EndPoint, static e => e.GetProperty("health").GetString() == "healthy");

        a.Default = "503";
        var down = await WaitUntilAsync(host, a.EndPoint, static e => e.GetProperty("health").GetString() == "unhealthy");
        Assert.Equal("answered status 503", down.GetProperty("healthDetail").GetString());
        Assert.False(down.GetProperty("available").GetBoolean());

        using var http = Client();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("b 200", await response.Content.ReadAsStringAsync());
        }

        a.Default = "200";
        await WaitUntilAsync(host, a.EndPoint, static e => e.GetProperty("health").GetString() == "healthy");
        var seen = new HashSet<string>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/up/{i}"));
            seen.Add(await response.Content.ReadAsStringAsync());
        }

        Assert.Contains("a 200", seen);
        Assert.Matches("proxy_health_checks_total\\{service=\"flaky\",result=\"unhealthy\"\\} [2-9]", await MetricsAsync(host));
    }

    [Fact]
    public async Task TcpHealthCheck_RefusingEndpointOut_ClustersTextSaysSo()
    {
        var good = Upstream("good");
        var dead = DeadEndPoint();
        var check = new HealthCheckConfig { Type = HealthCheckType.Tcp, Interval = TimeSpan.FromMilliseconds(100), UnhealthyThreshold = 1 };
        var host = await SidecarAsync(Service(null, check, dead, good.EndPoint));
        await WaitUntilAsync(host, dead, static e => e.GetProperty("health").GetString() == "unhealthy");

        using var http = Client();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var text = await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/clusters?format=text"));
        Assert.Contains($"flaky::{dead}::health::unhealthy\n", text, StringComparison.Ordinal);
        Assert.Contains($"flaky::{dead}::health_detail::connection refused\n", text, StringComparison.Ordinal);
        Assert.Contains($"flaky::{good.EndPoint}::health::healthy\n", text, StringComparison.Ordinal);
        Assert.Contains("flaky::balancer::round_robin\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OpaqueTcp_ConnectFailuresEject()
    {
        var good = Upstream("good");
        var dead = DeadEndPoint();
        var host = await SidecarAsync(Service(Detection with { ConsecutiveLocalOriginFailure = 1 }, null, dead, good.EndPoint), ListenerProtocol.Tcp);

        // A new TCP connection per request, each balanced on its own: the first one goes to the dead endpoint (reset).
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = Timeout };
        http.DefaultRequestHeaders.ConnectionClose = true;
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(Url(host, "/first")));
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True((await EndpointAsync(host, dead)).GetProperty("ejected").GetBoolean());
    }

    [Fact]
    public async Task Clusters_ShowsLoadAndLatency_EvenWithoutHealthConfig()
    {
        var a = Upstream("a");
        var host = await SidecarAsync(Service(null, null, a.EndPoint));
        using var http = Client();
        for (var i = 0; i < 3; i++)
        {
            using var _ = await http.GetAsync(Url(host, $"/{i}"));
        }

        var service = (await ClustersAsync(host)).GetProperty("services")[0];
        Assert.Equal("flaky", service.GetProperty("name").GetString());
        Assert.Equal("round_robin", service.GetProperty("balancer").GetString());
        var endpoint = service.GetProperty("endpoints")[0];
        Assert.Equal(a.EndPoint.ToString(), endpoint.GetProperty("address").GetString());
        Assert.Equal(1, endpoint.GetProperty("weight").GetInt32());
        Assert.Equal(0, endpoint.GetProperty("inFlight").GetInt32());
        Assert.True(endpoint.GetProperty("latencyMs").GetDouble() > 0);
        Assert.Equal("unchecked", endpoint.GetProperty("health").GetString());
        Assert.Equal(100, endpoint.GetProperty("successRate").GetDouble());
        Assert.Equal(3, endpoint.GetProperty("requests").GetInt64());
    }

    private static async Task<JsonElement> ClustersAsync(SidecarHost host)
    {
        using var http = Client();
        var json = await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/clusters"));
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    private static async Task<JsonElement> EndpointAsync(SidecarHost host, IPEndPoint address)
    {
        var clusters = await ClustersAsync(host);
        foreach (var e in clusters.GetProperty("services")[0].GetProperty("endpoints").EnumerateArray())
        {
            if (e.GetProperty("address").GetString() == address.ToString())
            {
                return e;
            }
        }

        throw new InvalidOperationException($"{address} is not in /clusters: {clusters}");
    }

    /// <summary>Polls /clusters (every 20 ms, up to the test timeout) until the endpoint satisfies <paramref name="condition"/>.</summary>
    private static async Task<JsonElement> WaitUntilAsync(SidecarHost host, IPEndPoint address, Func<JsonElement, bool> condition)
    {
        using var deadline = new CancellationTokenSource(Timeout);
        while (true)
        {
            var endpoint = await EndpointAsync(host, address);
            if (condition(endpoint))
            {
                return endpoint;
            }

            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(20), deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{address} did not reach the expected state within {Timeout}: {endpoint}");
            }
        }
    }
}

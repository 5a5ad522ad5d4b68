using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using static Proxy.Sidecar.Tests.Reliability.LimitsSidecar;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Circuit breakers through a real sidecar to an upstream that holds requests open on command: each limit reached
/// (a fast proxy-made 503 naming it, nothing sent upstream; at <c>maxConnections</c> a bounded wait first), and served
/// again once the load drops.
/// </summary>
public sealed class CircuitBreakerTests : ReliabilityTestBase
{
    private ScriptedUpstream Upstream(string defaultAction, params string[] script) => Upstream("u", defaultAction, script);

    private static ServiceConfig Service(CircuitBreakersConfig breakers, ScriptedUpstream upstream, RetryPolicyConfig? retries = null)
        => new("held", [], [upstream.EndPoint]) { CircuitBreakers = breakers, Retries = retries };

    private static async Task<HttpResponseMessage> OverflowAsync(HttpClient http, SidecarHost host, string limit)
    {
        var response = await http.GetAsync(Url(host, "/over")).WaitAsync(TestTimeout);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("overflow", Assert.Single(response.Headers.GetValues("x-proxy-error")));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains($"service held is at its circuit breaker limit {limit}", body, StringComparison.Ordinal);
        Assert.Contains("not sent upstream", body, StringComparison.Ordinal);
        return response;
    }

    [Fact]
    public async Task MaxRequests_Reached_503OverflowWithoutAnUpstreamAttempt_ThenServedAgain()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var accessLog = Path.Combine(Path.GetTempPath(), $"proxy-limits-{Guid.NewGuid():N}.log");
        try
        {
            var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxRequests = 2 }, upstream), http: new HttpConfig { AccessLog = accessLog });
            using var http = Client();
            var held = new[] { http.GetAsync(Url(host, "/a")), http.GetAsync(Url(host, "/b")) };
            await upstream.WhenHeldAsync(2).WaitAsync(TestTimeout);
            await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxRequests\"} 2");

            (await OverflowAsync(http, host, "maxRequests")).Dispose();
            Assert.Equal(2, upstream.Requests);

            // The load drops: the held requests finish and the next one is served.
            upstream.Default = "200";
            upstream.ReleaseHeld();
            foreach (var response in await Task.WhenAll(held).WaitAsync(TestTimeout))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                response.Dispose();
            }

            using (var again = await http.GetAsync(Url(host, "/c")).WaitAsync(TestTimeout))
            {
                Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            }

            Assert.Equal(3, upstream.Requests);
            var metrics = await MetricsAsync(host);
            Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxRequests\"} 1", metrics, StringComparison.Ordinal);
            Assert.Contains("proxy_circuit_breaker_current{service=\"held\",limit=\"maxRequests\"} 0", metrics, StringComparison.Ordinal);

            // Disposed here (the access log is complete once the host is gone), not again at the end of the test.
            Disposables.Remove(host);
            await host.DisposeAsync();
            var line = (await File.ReadAllLinesAsync(accessLog)).Single(l => l.Contains("/over", StringComparison.Ordinal));
            using var entry = System.Text.Json.JsonDocument.Parse(line);
            Assert.Equal("overflow", entry.RootElement.GetProperty("error").GetString());
            Assert.Equal("maxRequests", entry.RootElement.GetProperty("limit").GetString());
            Assert.Equal(503, entry.RootElement.GetProperty("status").GetInt32());
        }
        finally
        {
            File.Delete(accessLog);
        }
    }

    [Fact]
    public async Task MaxConnections_Reached_TheNextRequestWaitsForTheConnection_BothServedOnOne()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 1 }, upstream));
        using var http = Client();
        var first = http.GetAsync(Url(host, "/first"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

        // HTTP/1.1: the second request in flight needs a second connection; it waits (pending) instead of failing.
        var second = http.GetAsync(Url(host, "/second"));
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 1");
        Assert.False(second.IsCompleted);
        Assert.Equal(1, upstream.Requests);

        upstream.Default = "200";
        upstream.ReleaseHeld();
        using (var response = await first.WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var response = await second.WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(2, upstream.Requests);
        Assert.Equal(1, upstream.Connections);
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 0");
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_circuit_breaker_current{service=\"held\",limit=\"maxConnections\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_circuit_breaker_connection_waits_total{service=\"held\"} 1", metrics, StringComparison.Ordinal);
        Assert.True(!metrics.Contains("proxy_circuit_breaker_overflow_total{service=\"held\"", StringComparison.Ordinal), metrics);
    }

    [Fact]
    public async Task MaxConnections_BurstOfEightTimesTheLimit_AllServedOverTheLimitsConnections()
    {
        const int Burst = 32;
        var upstream = Upstream(ScriptedUpstream.Slow(20));
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 4 }, upstream));
        using var http = Client();

        // A first burst warms up (JIT, client connections); the second one is timed.
        foreach (var response in await Task.WhenAll(Enumerable.Range(0, Burst).Select(i => http.GetAsync(Url(host, $"/warm{i}")))).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }

        var took = System.Diagnostics.Stopwatch.StartNew();
        var responses = await Task.WhenAll(Enumerable.Range(0, Burst).Select(i => http.GetAsync(Url(host, $"/burst{i}")))).WaitAsync(TestTimeout);
        took.Stop();

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        foreach (var response in responses)
        {
            response.Dispose();
        }

        Assert.Equal(2 * Burst, upstream.Requests);
        Assert.InRange(upstream.Connections, 1, 4);
        var metrics = await MetricsAsync(host);
        Assert.True(!metrics.Contains("proxy_circuit_breaker_overflow_total{service=\"held\"", StringComparison.Ordinal), metrics);
        Assert.Contains("proxy_circuit_breaker_connection_waits_total{service=\"held\"}", metrics, StringComparison.Ordinal);
        Console.WriteLine(FormattableString.Invariant($"burst of {Burst} at maxConnections 4, upstream 20 ms: {took.ElapsedMilliseconds} ms, {upstream.Connections} upstream connections"));
    }

    [Fact]
    public async Task MaxConnectionsAndMaxPendingRequestsReached_TheThirdRequest503OverflowMaxPendingRequests()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 1, MaxPendingRequests = 1 }, upstream));
        using var http = Client();
        var first = http.GetAsync(Url(host, "/first"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);
        var waiting = http.GetAsync(Url(host, "/waiting"));
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 1");

        (await OverflowAsync(http, host, "maxPendingRequests")).Dispose();
        Assert.Equal(1, upstream.Requests);

        upstream.Default = "200";
        upstream.ReleaseHeld();
        foreach (var response in await Task.WhenAll(first, waiting).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }

        Assert.Equal(2, upstream.Requests);
        Assert.Equal(1, upstream.Connections);
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxPendingRequests\"} 1", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxConnections\"}", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MaxConnections_WaitingClientGoesAway_LeavesTheQueue_ALaterRequestIsServed()
    {
        // The waiting client is an HTTP/2 stream the client resets (HTTP/1.1 to the upstream); an HTTP/1.1 client's
        // close is only noticed once the proxy writes to it (README "Circuit breaking").
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 1 }, upstream) with { UpstreamProtocol = UpstreamProtocol.Http1 });
        using var http = Client();
        var first = http.GetAsync(Url(host, "/first"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

        using (var gone = new CancellationTokenSource())
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/gone"))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            var waiting = http.SendAsync(request, gone.Token);
            await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 1");
            await gone.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TestTimeout));
        }

        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 0");

        // The held request ends: its connection goes idle (no waiter left to take it) and serves the next request.
        upstream.Default = "200";
        upstream.ReleaseHeld();
        (await first.WaitAsync(TestTimeout)).Dispose();
        using (var later = await http.GetAsync(Url(host, "/later")).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, later.StatusCode);
        }

        Assert.Equal(2, upstream.Requests);
        Assert.Equal(1, upstream.Connections);
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxRequests\"} 0");
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 0", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_circuit_breaker_current{service=\"held\",limit=\"maxConnections\"} 1", metrics, StringComparison.Ordinal);
        Assert.True(!metrics.Contains("proxy_circuit_breaker_overflow_total{service=\"held\"", StringComparison.Ordinal), metrics);
    }

    [Fact]
    public async Task MaxConnections_NoneFreeWithinTheConnectTimeout_503OverflowMaxConnectionsSayingHowLongItWaited()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var accessLog = Path.Combine(Path.GetTempPath(), $"proxy-limits-{Guid.NewGuid():N}.log");
        try
        {
            var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 1 }, upstream),
                http: new HttpConfig { AccessLog = accessLog }, tcp: new TcpConfig { ConnectTimeout = TimeSpan.FromMilliseconds(300) });
            using var http = Client();
            var held = http.GetAsync(Url(host, "/held"));
            await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

            var waited = System.Diagnostics.Stopwatch.StartNew();
            using (var response = await OverflowAsync(http, host, "maxConnections"))
            {
                Assert.InRange(waited.Elapsed, TimeSpan.FromMilliseconds(250), TestTimeout);
                var body = await response.Content.ReadAsStringAsync();
                Assert.Matches("none came free while the request waited [0-9]+ ms, so no connection to 127.0.0.1:[0-9]+ was opened", body);
            }

            Assert.Equal(1, upstream.Requests);
            upstream.Default = "200";
            upstream.ReleaseHeld();
            (await held.WaitAsync(TestTimeout)).Dispose();
            var metrics = await MetricsAsync(host);
            Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxConnections\"} 1", metrics, StringComparison.Ordinal);
            Assert.Contains("proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 0", metrics, StringComparison.Ordinal);

            Disposables.Remove(host);
            await host.DisposeAsync();
            var line = (await File.ReadAllLinesAsync(accessLog)).Single(l => l.Contains("/over", StringComparison.Ordinal));
            using var entry = System.Text.Json.JsonDocument.Parse(line);
            Assert.Equal("overflow", entry.RootElement.GetProperty("error").GetString());
            Assert.Equal("maxConnections", entry.RootElement.GetProperty("limit").GetString());
        }
        finally
        {
            File.Delete(accessLog);
        }
    }

    [Fact]
    public async Task MaxPendingRequests_Reached_503Overflow_ThenTheWaitingRequestIsServed()
    {
        // One connection per endpoint: the second request waits for it (pending), the third finds the queue full.
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxPendingRequests = 1 }, upstream), http: new HttpConfig { PoolMaxConnections = 1 });
        using var http = Client();
        var first = http.GetAsync(Url(host, "/first"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);
        var waiting = http.GetAsync(Url(host, "/waiting"));
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 1");

        (await OverflowAsync(http, host, "maxPendingRequests")).Dispose();
        Assert.Equal(1, upstream.Requests);

        upstream.Default = "200";
        upstream.ReleaseHeld();
        using (var response = await first.WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var response = await waiting.WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(2, upstream.Requests);
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxPendingRequests\"} 0");
        Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxPendingRequests\"} 1", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MaxRetries_Reached_TheRetryIsNotMade_TheUpstreamAnswerGoesBack()
    {
        // Request A: 503, retried, the retry held (A holds the one retry slot). Request B: 503, no retry slot left.
        var upstream = Upstream("200", "503", ScriptedUpstream.Hold, "503");
        var retries = new RetryPolicyConfig { Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxRetries = 1 }, upstream, retries));
        using var http = Client();
        var a = http.GetAsync(Url(host, "/a"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

        using (var b = await http.GetAsync(Url(host, "/b")).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, b.StatusCode);
            Assert.Equal("u 503", await b.Content.ReadAsStringAsync());
        }

        Assert.Equal(3, upstream.Requests);
        upstream.ReleaseHeld();
        using (var response = await a.WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The slot is back: a failing request is retried again.
        upstream.Enqueue("503");
        using (var c = await http.GetAsync(Url(host, "/c")).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.OK, c.StatusCode);
        }

        Assert.Equal(5, upstream.Requests);
        var metrics = await MetricsAsync(host);
        Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxRetries\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_http_retries_total{listener=\"edge\",service=\"held\",reason=\"503\"} 2", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Grpc_MaxRequestsReached_Unavailable()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxRequests = 1 }, upstream) with { UpstreamProtocol = UpstreamProtocol.Http1 });
        using var http = Client();
        var held = http.GetAsync(Url(host, "/a"));
        await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

        var (status, message, reason) = await GrpcCallAsync(host);
        Assert.Equal(14, status);
        Assert.Equal("overflow", reason);
        Assert.Contains("maxRequests", message, StringComparison.Ordinal);

        upstream.Default = "200";
        upstream.ReleaseHeld();
        (await held.WaitAsync(TestTimeout)).Dispose();
    }

    [Fact]
    public async Task OpaqueTcp_MaxConnectionsReached_ConnectionReset_ThenAcceptedAgain()
    {
        var upstream = Upstream(ScriptedUpstream.Hold);
        var host = await StartAsync(Disposables, Service(new CircuitBreakersConfig { MaxConnections = 1 }, upstream), protocol: ListenerProtocol.Tcp);
        var edge = (IPEndPoint)host.AddressOf("edge")!;
        using (var first = new TcpClient())
        {
            await first.ConnectAsync(edge).WaitAsync(TestTimeout);
            var stream = first.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /tcp HTTP/1.1\r\nHost: x\r\n\r\n")).AsTask().WaitAsync(TestTimeout);
            await upstream.WhenHeldAsync(1).WaitAsync(TestTimeout);

            Assert.True(await IsResetAsync(edge), "the second connection was not closed");
            Assert.Equal(1, upstream.Requests);
            Assert.Contains("proxy_circuit_breaker_overflow_total{service=\"held\",limit=\"maxConnections\"} 1", await MetricsAsync(host), StringComparison.Ordinal);

            // The upstream answers; the client closes; the upstream closes after it (half-close is forwarded).
            upstream.Default = "200";
            upstream.ReleaseHeld();
            var answer = new byte[256];
            var n = await stream.ReadAsync(answer).AsTask().WaitAsync(TestTimeout);
            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(answer, 0, n), StringComparison.Ordinal);
        }

        // The first one closed: its slot is back.
        await WaitForMetricAsync(host, "proxy_circuit_breaker_current{service=\"held\",limit=\"maxConnections\"} 0");
        using var third = new TcpClient();
        await third.ConnectAsync(edge).WaitAsync(TestTimeout);
        var s = third.GetStream();
        await s.WriteAsync(Encoding.ASCII.GetBytes("GET /tcp HTTP/1.1\r\nHost: x\r\n\r\n")).AsTask().WaitAsync(TestTimeout);
        var again = new byte[256];
        var read = await s.ReadAsync(again).AsTask().WaitAsync(TestTimeout);
        Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(again, 0, read), StringComparison.Ordinal);
    }

    /// <summary>
    /// True when a new connection to <paramref name="edge"/> is closed or reset before anything is received (the reset
    /// may already fail the connect: the listener resets at once).
    /// </summary>
    private static async Task<bool> IsResetAsync(IPEndPoint edge)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(edge).WaitAsync(TestTimeout);
            return await client.GetStream().ReadAsync(new byte[64]).AsTask().WaitAsync(TestTimeout) == 0;
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            return true;
        }
    }
}

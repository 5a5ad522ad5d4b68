using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using static Proxy.Sidecar.Tests.Reliability.RetryTests;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Timeouts through a real sidecar (explicit HTTP listener) to scripted upstreams on loopback that stall, stall mid-body
/// or answer slowly: each timeout fires with the reason that names it (HTTP/1.1, HTTP/2 and gRPC), a per-try timeout is
/// retried to a good endpoint, the request timeout bounds every try, and a slowloris client gets 408.
/// </summary>
public sealed class TimeoutTests : ReliabilityTestBase
{
    private static readonly TimeSpan Off = System.Threading.Timeout.InfiniteTimeSpan;
    private Task<SidecarHost> SidecarAsync(ServiceConfig service, HttpConfig? http = null, params RouteConfig[] routes) => EdgeAsync(service, routes, http);

    private static ServiceConfig Service(RetryPolicyConfig? retries, params IPEndPoint[] endpoints)
        => new("slow", [], endpoints) { Retries = retries, UpstreamProtocol = UpstreamProtocol.Http1 };

    private static RouteConfig Route(RouteTimeoutsConfig timeouts, RetryPolicyConfig? retries = null) => new()
    {
        Name = "timed",
        Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("slow")] },
        Timeouts = timeouts,
        Retries = retries,
    };

    private static readonly RetryPolicyConfig Retry = new() { Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5) };

    private static async Task<string> ProxyErrorAsync(HttpResponseMessage response)
    {
        Assert.True(response.Headers.TryGetValues("x-proxy-error", out var values), $"no x-proxy-error on {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        return values.Single();
    }

    [Fact]
    public async Task PerTry_UpstreamSilent_504NamingThePerTryTimeout()
    {
        var upstream = Upstream("u", ScriptedUpstream.Stall);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, Route(new RouteTimeoutsConfig { PerTry = TimeSpan.FromMilliseconds(200) }));
        using var http = Client();
        var clock = Stopwatch.StartNew();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("per_try_timeout", await ProxyErrorAsync(response));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("per-try timeout of 200 ms", body, StringComparison.Ordinal);
        Assert.Contains(upstream.EndPoint.ToString(), body, StringComparison.Ordinal);
        Assert.Contains("route timed", body, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(190), TimeSpan.FromSeconds(10));
        Assert.Equal(1, upstream.Requests);
    }

    [Fact]
    public async Task PerTry_Timeout_RetriedOnTheOtherEndpoint_EveryRequestSucceeds()
    {
        var stalling = Upstream("stalling", ScriptedUpstream.Stall);
        var good = Upstream("good");
        // Long enough that the good endpoint always answers within it, even on a loaded machine.
        var host = await SidecarAsync(Service(Retry, stalling.EndPoint, good.EndPoint), null, Route(new RouteTimeoutsConfig { PerTry = TimeSpan.FromSeconds(1) }));
        using var http = Client();
        for (var i = 0; i < 6; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("good 200", await response.Content.ReadAsStringAsync());
        }

        Assert.Equal(6, good.Requests);
        Assert.InRange(stalling.Requests, 1, 6);
        Assert.Contains($"proxy_http_retries_total{{listener=\"edge\",service=\"slow\",reason=\"per-try-timeout\"}} {stalling.Requests}", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Request_BoundsEveryTryAndBackoff_504RequestTimeout()
    {
        var a = Upstream("a", ScriptedUpstream.Stall);
        var b = Upstream("b", ScriptedUpstream.Stall);
        var route = Route(new RouteTimeoutsConfig { Request = TimeSpan.FromMilliseconds(1000), PerTry = TimeSpan.FromMilliseconds(100) }, Retry with { MaxRetries = 10 });
        var host = await SidecarAsync(Service(null, a.EndPoint, b.EndPoint), null, route);
        using var http = Client();
        var clock = Stopwatch.StartNew();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("request_timeout", await ProxyErrorAsync(response));
        Assert.Contains("request timeout of 1000 ms", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(990), TimeSpan.FromSeconds(10));
        // Per-try timeouts were retried (100 ms each) until the request's 1000 ms ran out: at most 10 tries, never the
        // 11 the policy would allow.
        Assert.InRange(a.Requests + b.Requests, 2, 10);
    }

    [Fact]
    public async Task Request_ExpiresDuringTheResponseBody_ClientReset()
    {
        var upstream = Upstream("u", ScriptedUpstream.StallBody);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, Route(new RouteTimeoutsConfig { Request = TimeSpan.FromSeconds(1) }));
        await AssertBodyBrokenOffAsync(host, "request_timeout");
    }

    [Fact]
    public async Task GlobalRequestTimeout_NoRoute_504RequestTimeout()
    {
        var upstream = Upstream("u", ScriptedUpstream.Stall);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), new HttpConfig { RequestTimeout = TimeSpan.FromMilliseconds(250) });
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("request_timeout", await ProxyErrorAsync(response));
    }

    [Fact]
    public async Task Idle_BeforeTheResponseHead_504IdleTimeout()
    {
        var upstream = Upstream("u", ScriptedUpstream.Stall);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, Route(new RouteTimeoutsConfig { PerTry = Off, Idle = TimeSpan.FromMilliseconds(200) }));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("idle_timeout", await ProxyErrorAsync(response));
        Assert.Contains("stream idle timeout of 200 ms", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Idle_AfterTheResponseHead_ClientReset()
    {
        var upstream = Upstream("u", ScriptedUpstream.StallBody);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), new HttpConfig { StreamIdleTimeout = TimeSpan.FromSeconds(1) });
        await AssertBodyBrokenOffAsync(host, "idle_timeout");
    }

    [Fact]
    public async Task SlowUpstream_WithinEveryTimeout_Answered()
    {
        var upstream = Upstream("u", ScriptedUpstream.Slow(150));
        var route = Route(new RouteTimeoutsConfig { Request = TimeSpan.FromSeconds(5), PerTry = TimeSpan.FromSeconds(4), Idle = TimeSpan.FromSeconds(4) });
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, route);
        using var http = Client();
        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync(Url(host, "/x"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task RouteConnectTimeout_PoolFull_504ConnectTimeout()
    {
        // One connection per endpoint: the first request holds it (the upstream stalls), the second waits for it
        // no longer than the route's connect timeout.
        var upstream = Upstream("u", "200", ScriptedUpstream.Stall);
        var route = Route(new RouteTimeoutsConfig { Connect = TimeSpan.FromSeconds(1), PerTry = TimeSpan.FromSeconds(15) });
        var host = await SidecarAsync(Service(null, upstream.EndPoint), new HttpConfig { PoolMaxConnections = 1 }, route);
        using var http = Client();
        using var stopHolding = new CancellationTokenSource();
        var holding = http.GetAsync(Url(host, "/hold"), stopHolding.Token);
        await WaitUntilAsync(() => upstream.Requests == 1);
        var clock = Stopwatch.StartNew();
        using (var response = await http.GetAsync(Url(host, "/x")))
        {
            // Not pool_exhausted: the pool's own wait (the 5 s connect timeout) did not end it, the route's did.
            Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
            Assert.Equal("upstream_connect_timeout", await ProxyErrorAsync(response));
            Assert.Contains("connect timeout of 1000 ms", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4.5), $"took {clock.Elapsed}: the route's connect timeout did not bound the pool wait");
        await stopHolding.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => holding.WaitAsync(Timeout));
    }

    [Fact]
    public async Task HeaderTimeout_Slowloris_408AndClosed()
    {
        var upstream = Upstream("u");
        var host = await SidecarAsync(Service(null, upstream.EndPoint), new HttpConfig { HeaderTimeout = TimeSpan.FromSeconds(1) });
        var edge = (IPEndPoint)host.AddressOf("edge")!;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(edge).WaitAsync(Timeout);
        await socket.SendAsync("GET /slow HTTP/1.1\r\nHost: a\r\nX-Tri"u8.ToArray()).WaitAsync(Timeout);
        var clock = Stopwatch.StartNew();
        var received = new StringBuilder();
        var buffer = new byte[4096];
        int read;
        while ((read = await socket.ReceiveAsync(buffer).WaitAsync(Timeout)) > 0)
        {
            received.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        var text = received.ToString();
        Assert.StartsWith("HTTP/1.1 408 ", text, StringComparison.Ordinal);
        Assert.Contains("x-proxy-error: header_timeout", text, StringComparison.Ordinal);
        Assert.Contains("connection: close", text, StringComparison.Ordinal);
        Assert.Contains("header timeout of 1000 ms", text, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Assert.Equal(0, upstream.Requests);

        // A client that sends its head in pieces but in time is served.
        using var second = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await second.ConnectAsync(edge).WaitAsync(Timeout);
        await second.SendAsync("GET /ok HTTP/1.1\r\n"u8.ToArray()).WaitAsync(Timeout);
        await second.SendAsync("Host: a\r\nConnection: close\r\n\r\n"u8.ToArray()).WaitAsync(Timeout);
        received.Clear();
        while ((read = await second.ReceiveAsync(buffer).WaitAsync(Timeout)) > 0)
        {
            received.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        Assert.StartsWith("HTTP/1.1 200 ", received.ToString(), StringComparison.Ordinal);
        Assert.Matches("proxy_http_requests_total\\{listener=\"edge\",service=\"unknown\",route=\"\",status_class=\"4xx\",error=\"header_timeout\"\\} 1", await MetricsAsync(host));
    }

    [Fact]
    public async Task Http2_PerTry_504NamingIt()
    {
        var upstream = Upstream("u", ScriptedUpstream.Stall);
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, Route(new RouteTimeoutsConfig { PerTry = TimeSpan.FromMilliseconds(200) }));
        using var http = Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/x")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await http.SendAsync(request).WaitAsync(Timeout);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("per_try_timeout", await ProxyErrorAsync(response));
    }

    [Theory]
    [InlineData("per_try_timeout")]
    [InlineData("request_timeout")]
    [InlineData("idle_timeout")]
    public async Task Grpc_TimeoutBeforeTheHead_DeadlineExceededNamingIt(string reason)
    {
        var upstream = Upstream("u", ScriptedUpstream.Stall);
        var ms = TimeSpan.FromMilliseconds(200);
        var timeouts = reason switch
        {
            "per_try_timeout" => new RouteTimeoutsConfig { PerTry = ms },
            "request_timeout" => new RouteTimeoutsConfig { Request = ms },
            _ => new RouteTimeoutsConfig { PerTry = Off, Idle = ms },
        };
        var host = await SidecarAsync(Service(null, upstream.EndPoint), null, Route(timeouts));
        var (status, message, proxyError) = await GrpcCallAsync(host);
        Assert.Equal(4, status);
        Assert.Equal(reason, proxyError);
        Assert.Contains("200 ms", message, StringComparison.Ordinal);
    }

    /// <summary>A unary gRPC call made by hand over h2c; returns grpc-status, grpc-message and x-proxy-error of its trailers-only answer.</summary>
    internal static async Task<(int Status, string Message, string? Reason)> GrpcCallAsync(SidecarHost host, params (string Name, string Value)[] headers)
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
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await http.SendAsync(request).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        var status = int.Parse(Assert.Single(response.Headers.GetValues("grpc-status")), System.Globalization.CultureInfo.InvariantCulture);
        var message = Uri.UnescapeDataString(Assert.Single(response.Headers.GetValues("grpc-message")));
        var reason = response.Headers.TryGetValues("x-proxy-error", out var values) ? values.Single() : null;
        return (status, message, reason);
    }

    /// <summary>The client gets the 200 head and half the body, then the connection is reset; the metrics name <paramref name="reason"/>.</summary>
    private static async Task AssertBodyBrokenOffAsync(SidecarHost host, string reason)
    {
        using var http = Client();
        using (var response = await http.GetAsync(Url(host, "/x"), HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            // Broken off by the proxy (a reset), not by the test's own timeout.
            var broken = await Record.ExceptionAsync(() => response.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.NotNull(broken);
            Assert.IsNotType<TimeoutException>(broken);
        }

        await WaitUntilAsync(async () => (await MetricsAsync(host)).Contains($"error=\"{reason}\"}} 1", StringComparison.Ordinal));
    }

    private static Task WaitUntilAsync(Func<bool> condition) => WaitUntilAsync(() => Task.FromResult(condition()));

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < Timeout, "condition not met in time");
            await Task.Delay(20);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Retry policies through a real sidecar (explicit HTTP listener) to scripted upstreams on loopback that refuse, reset
/// and answer 503 on command: each condition, the limits (attempts, methods, bodies) and the service's retry budget.
/// </summary>
public sealed class RetryTests : ReliabilityTestBase
{
    private Task<SidecarHost> SidecarAsync(ServiceConfig service, params RouteConfig[] routes) => EdgeAsync(service, routes);

    private static ServiceConfig Service(RetryPolicyConfig? retries, params IPEndPoint[] endpoints)
        => new("flaky", [], endpoints) { Retries = retries };

    private static readonly RetryPolicyConfig Default = new() { Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5) };

    [Fact]
    public async Task ConnectFailure_RetriedOnTheOtherEndpoint_EveryRequestSucceeds()
    {
        var good = Upstream("good");
        var host = await SidecarAsync(Service(Default, DeadEndPoint(), good.EndPoint));
        using var http = Client();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(10, good.Requests);
        Assert.Matches("proxy_http_retries_total\\{listener=\"edge\",service=\"flaky\",reason=\"connect-failure\"\\} [1-9]", await MetricsAsync(host));
    }

    [Fact]
    public async Task Status503_RetriedUntilAnAnswerThatIsNot()
    {
        var upstream = Upstream("u", "200", "503", "503");
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, upstream.Requests);
        Assert.Contains("proxy_http_retries_total{listener=\"edge\",service=\"flaky\",reason=\"503\"} 2", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Retry_SendsTheSameRewrittenTargetAndTheSameMadeRequestId()
    {
        var upstream = Upstream("u", "200", "503");
        var routes = RouteConfigReader.ReadJson("""
            [{ "match": { "path": { "segmentPrefix": "/api" } }, "action": { "service": "flaky", "rewrite": { "pathPrefix": "/v2" } } }]
            """);
        Assert.True(routes.Ok, string.Join("\n", routes.Errors));
        var host = await EdgeAsync(Service(Default, upstream.EndPoint), [.. routes.Routes!], new HttpConfig { RequestId = RequestIdMode.Generate });
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/api/x?y=1"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var heads = upstream.Heads.ToArray();
        Assert.Equal(2, heads.Length);
        Assert.All(heads, h => Assert.StartsWith("GET /v2/x?y=1 HTTP/1.1\r\n", h, StringComparison.Ordinal));
        var ids = heads.Select(h => h.Split("\r\n").Single(l => l.StartsWith("x-request-id: ", StringComparison.Ordinal))).ToArray();
        Assert.Equal(ids[0], ids[1]);
    }

    [Fact]
    public async Task AlwaysFailing_MaxRetriesThenTheLastAnswerIsForwarded()
    {
        var upstream = Upstream("u", "503");
        var host = await SidecarAsync(Service(Default with { MaxRetries = 3 }, upstream.EndPoint));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("u 503", await response.Content.ReadAsStringAsync());
        Assert.Equal(4, upstream.Requests);
    }

    [Fact]
    public async Task ResetBeforeAnyResponseByte_Retried()
    {
        var upstream = Upstream("u", "200", ScriptedUpstream.Close);
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, upstream.Requests);
        Assert.Contains("reason=\"reset\"} 1", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_503NotRetried_UnlessThePolicyAllowsNonIdempotent()
    {
        var upstream = Upstream("u", "200", "503");
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        using (var response = await http.PostAsync(Url(host, "/x"), null))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        var lenient = Upstream("v", "200", "503");
        var host2 = await SidecarAsync(Service(Default with { NonIdempotent = true }, lenient.EndPoint));
        using (var response = await http.PostAsync(Url(host2, "/x"), null))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, upstream.Requests);
        Assert.Equal(2, lenient.Requests);
    }

    [Fact]
    public async Task RequestWithBody_KeptAndSentAgain()
    {
        var upstream = Upstream("u", "200", "503");
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        using var response = await http.PutAsync(Url(host, "/x"), new StringContent("payload"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, upstream.Requests);
        Assert.Equal(["payload", "payload"], upstream.Bodies);
    }

    [Fact]
    public async Task ChunkedBody_KeptWithItsFramingAndSentAgainAfterAReset()
    {
        var upstream = Upstream("u", "200", ScriptedUpstream.Close);
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        var text = string.Concat(Enumerable.Range(0, 2000).Select(static i => $"{i},"));
        var content = new StreamContent(new MemoryStream(System.Text.Encoding.ASCII.GetBytes(text)));
        using var request = new HttpRequestMessage(HttpMethod.Put, Url(host, "/chunked")) { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, upstream.Requests);
        Assert.Equal([text, text], upstream.Bodies);
        Assert.Contains("reason=\"reset\"} 1", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostWithBody_ConnectFailure_RetriedOnTheOtherEndpoint()
    {
        // A connect failure is safe for any method: nothing reached the upstream.
        var good = Upstream("good");
        var host = await SidecarAsync(Service(Default, DeadEndPoint(), good.EndPoint));
        using var http = Client();
        for (var i = 0; i < 6; i++)
        {
            using var response = await http.PostAsync(Url(host, $"/{i}"), new StringContent($"body {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(Enumerable.Range(0, 6).Select(static i => $"body {i}"), good.Bodies);
    }

    [Fact]
    public async Task BodyOverTheLimit_NotRetried_AndTheConnectionStaysSound()
    {
        var upstream = Upstream("u", "200", "503", "503");
        var host = await SidecarAsync(Service(Default with { MaxBodyBytes = 4 }, upstream.EndPoint));
        using var http = Client();
        using (var response = await http.PutAsync(Url(host, "/x"), new StringContent("payload")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        Assert.Equal(1, upstream.Requests);

        // A body within the limit on the same client is kept and retried.
        using (var response = await http.PutAsync(Url(host, "/x"), new StringContent("tiny")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(["payload", "tiny", "tiny"], upstream.Bodies);
    }

    [Fact]
    public async Task UpstreamAnswersBeforeTheBody_RetryResumesTheBodyWhereItStopped()
    {
        var upstream = Upstream("u", "200", "early503");
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var client = new TcpClient();
        await client.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
        var stream = client.GetStream();
        await stream.WriteAsync("PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"u8.ToArray()).AsTask().WaitAsync(Timeout);

        // The first try was answered 503 before its body was complete; the retry has the first half again.
        await WaitForAsync(async () => (await MetricsAsync(host)).Contains("reason=\"503\"} 1", StringComparison.Ordinal));
        await stream.WriteAsync("56789"u8.ToArray()).AsTask().WaitAsync(Timeout);
        var answer = await ReadResponseAsync(stream);
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.EndsWith("u 200", answer, StringComparison.Ordinal);
        Assert.Contains("0123456789", upstream.Bodies);

        // The client connection is still good for the next request.
        await stream.WriteAsync("GET /next HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
        Assert.StartsWith("HTTP/1.1 200", await ReadResponseAsync(stream), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_UnavailableTrailersOnly_RetriedWithTheMessage_OtherStatusesNot()
    {
        var upstream = Upstream("u", "grpc0", "grpc14", "grpc14", "grpc0", "grpc3");
        var service = Service(Default with { On = RetryOn.GrpcUnavailable }, upstream.EndPoint) with { UpstreamProtocol = UpstreamProtocol.Http1 };
        var host = await SidecarAsync(service);
        using var http = Client();
        byte[] message = [0, 0, 0, 0, 3, 0x0a, 0x01, 0x41];

        async Task<(HttpStatusCode Status, string? Grpc)> CallAsync()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, Url(host, "/pkg.Svc/Call"))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new ByteArrayContent(message),
            };
            request.Content.Headers.ContentType = new("application/grpc");
            request.Headers.TryAddWithoutValidation("te", "trailers");
            using var response = await http.SendAsync(request);
            await response.Content.ReadAsByteArrayAsync();
            var grpc = response.Headers.TryGetValues("grpc-status", out var values) ? values.Single()
                : response.TrailingHeaders.TryGetValues("grpc-status", out var trailer) ? trailer.Single() : null;
            return (response.StatusCode, grpc);
        }

        // UNAVAILABLE twice, then OK: the call succeeds, the upstream read the message three times.
        Assert.Equal((HttpStatusCode.OK, "0"), await CallAsync());
        Assert.Equal(3, upstream.Requests);
        Assert.All(upstream.Bodies, static b => Assert.Equal("\0\0\0\0\u0003\n\u0001A", b));

        // INVALID_ARGUMENT is not a listed condition: answered as it is, not retried.
        Assert.Equal((HttpStatusCode.OK, "3"), await CallAsync());
        Assert.Equal(4, upstream.Requests);
        Assert.Contains("reason=\"unavailable\"} 2", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConditionNotListed_NotRetried()
    {
        var upstream = Upstream("u", "200", "500");
        var host = await SidecarAsync(Service(Default, upstream.EndPoint));
        using var http = Client();
        using (var response = await http.GetAsync(Url(host, "/x")))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        // 5xx covers 500; retriable-status-codes covers a listed 409.
        var other = Upstream("v", "200", "500", "409");
        var host2 = await SidecarAsync(Service(Default with { On = RetryOn.Status5xx | RetryOn.RetriableStatusCodes, StatusCodes = [409] }, other.EndPoint));
        using (var response = await http.GetAsync(Url(host2, "/x")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(3, other.Requests);
    }

    [Fact]
    public async Task NoPolicy_NothingRetried()
    {
        var upstream = Upstream("u", "200", "503");
        var host = await SidecarAsync(Service(null, upstream.EndPoint));
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(1, upstream.Requests);
    }

    [Fact]
    public async Task RoutePolicy_OverridesTheService()
    {
        var upstream = Upstream("u", "503");
        var route = new RouteConfig
        {
            Name = "one-retry",
            Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("flaky")] },
            Retries = Default with { MaxRetries = 1 },
        };
        var host = await SidecarAsync(Service(Default with { MaxRetries = 5 }, upstream.EndPoint), route);
        using var http = Client();
        using var response = await http.GetAsync(Url(host, "/x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(2, upstream.Requests);
    }

    [Fact]
    public async Task Budget_Spent_FailuresForwardedUnretried()
    {
        // No floor and a 10% ratio: 20 requests earn 2 retries; the rest of the failures go back as they are.
        var upstream = Upstream("u", "503");
        var host = await SidecarAsync(Service(Default with { MaxRetries = 1 }, upstream.EndPoint) with { RetryBudget = new RetryBudgetConfig { Ratio = 0.1, MinPerSecond = 0 } });
        using var http = Client();
        for (var i = 0; i < 20; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        Assert.InRange(upstream.Requests, 20, 22);
        var metrics = await MetricsAsync(host);
        Assert.Matches("proxy_http_retry_budget_exhausted_total\\{listener=\"edge\",service=\"flaky\"\\} (1[89]|20)", metrics);
    }

    internal static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    internal static Uri Url(SidecarHost host, string path) => new($"http://{host.AddressOf("edge")}{path}");

    internal static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = Client();
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        using var deadline = new CancellationTokenSource(Timeout);
        while (!await condition())
        {
            await Task.Delay(20, deadline.Token);
        }
    }

    /// <summary>Reads one response with a Content-Length body from a raw connection.</summary>
    private static async Task<string> ReadResponseAsync(NetworkStream stream)
    {
        var text = new System.Text.StringBuilder();
        var buffer = new byte[4096];
        while (true)
        {
            var s = text.ToString();
            var end = s.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var line = s.Split("\r\n").First(static l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
                var length = int.Parse(line.AsSpan(15).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                if (s.Length >= end + 4 + length)
                {
                    return s[..(end + 4 + length)];
                }
            }

            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, read);
            text.Append(System.Text.Encoding.Latin1.GetString(buffer, 0, read));
        }
    }

    internal static IPEndPoint DeadEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }
}

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
public sealed class RetryTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private ScriptedUpstream Upstream(string name, string defaultAction = "200", params string[] script)
    {
        var upstream = new ScriptedUpstream(name, defaultAction, script);
        _disposables.Add(upstream);
        return upstream;
    }

    private async Task<SidecarHost> SidecarAsync(ServiceConfig service, params RouteConfig[] routes)
    {
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Services = [service],
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), routes.Length == 0 ? service.Name : "") { Protocol = ListenerProtocol.Http, Routes = routes }],
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(new IPEndPoint(IPAddress.Loopback, 9)));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

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
    public async Task RequestWithBody_NotRetried()
    {
        var upstream = Upstream("u", "200", "503");
        var host = await SidecarAsync(Service(Default with { NonIdempotent = true }, upstream.EndPoint));
        using var http = Client();
        using var response = await http.PutAsync(Url(host, "/x"), new StringContent("payload"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(1, upstream.Requests);
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

    internal static IPEndPoint DeadEndPoint()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return (IPEndPoint)s.LocalEndPoint!;
    }
}

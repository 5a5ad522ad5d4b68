using System.Net;
using System.Net.Sockets;
using Proxy.Core.Configuration;
using static Proxy.Sidecar.Tests.Reliability.LimitsSidecar;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Local rate limits through a real sidecar: per route and per source (client IP), 429 with retry-after and the
/// number of requests let through counted at the upstream; gRPC callers get RESOURCE_EXHAUSTED.
/// </summary>
public sealed class RateLimitTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private ScriptedUpstream Upstream()
    {
        var upstream = new ScriptedUpstream("u");
        _disposables.Add(upstream);
        return upstream;
    }

    // One token an hour: nothing refills during a test, so the counts are exact.
    private static RateLimitConfig Hourly(int burst, RateLimitKey by = RateLimitKey.Route) => new() { Requests = 1, Per = TimeSpan.FromHours(1), Burst = burst, By = by };

    private static RouteConfig Route(string name, string prefix, RateLimitConfig? limit) => new()
    {
        Name = name,
        Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, prefix) },
        Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig("api")] },
        RateLimit = limit,
    };

    [Fact]
    public async Task PerRoute_BurstServed_Then429WithRetryAfter_OtherRoutesUnaffected()
    {
        var upstream = Upstream();
        var host = await StartAsync(_disposables, new ServiceConfig("api", [], [upstream.EndPoint]),
            [Route("limited", "/limited", Hourly(3)), Route("free", "/", null)]);
        using var http = Client();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/limited/{i}")).WaitAsync(TestTimeout);
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Equal("rate_limited", Assert.Single(response.Headers.GetValues("x-proxy-error")));
                var retryAfter = response.Headers.RetryAfter?.Delta;
                Assert.NotNull(retryAfter);
                Assert.InRange(retryAfter.Value, TimeSpan.FromMinutes(59), TimeSpan.FromHours(1));
                var body = await response.Content.ReadAsStringAsync();
                Assert.Contains("route limited on listener edge is rate limited to 1 request per 1h (burst 3)", body, StringComparison.Ordinal);
            }
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);
        Assert.Equal(3, upstream.Requests);
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/free/{i}")).WaitAsync(TestTimeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(8, upstream.Requests);
        Assert.Contains("proxy_http_rate_limited_total{listener=\"edge\",service=\"api\",route=\"limited\"} 2", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PerSource_EachClientAddressHasItsOwnBucket()
    {
        var upstream = Upstream();
        var host = await StartAsync(_disposables, new ServiceConfig("api", [], [upstream.EndPoint]), [Route("per-client", "/", Hourly(2, RateLimitKey.Source))]);
        using var one = Client(From(IPAddress.Parse("127.0.0.1")));
        using var two = Client(From(IPAddress.Parse("127.0.0.2")));
        foreach (var http in new[] { one, two })
        {
            var ok = 0;
            var limited = 0;
            for (var i = 0; i < 4; i++)
            {
                using var response = await http.GetAsync(Url(host, $"/{i}")).WaitAsync(TestTimeout);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    ok++;
                }
                else
                {
                    Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
                    Assert.NotNull(response.Headers.RetryAfter);
                    Assert.Contains("per source", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                    limited++;
                }
            }

            Assert.Equal((2, 2), (ok, limited));
        }

        Assert.Equal(4, upstream.Requests);
    }

    [Fact]
    public async Task PerSource_AnMtlsPeerIsKeyedByItsIdentity_NotItsAddress()
    {
        // Clients from 127.0.0.1 and 127.0.0.2 are the same mesh workload (one SPIFFE ID): they share a bucket;
        // a plaintext client from 127.0.0.3 is keyed by its address.
        const string identity = "spiffe://cluster.local/ns/shop/sa/web";
        var upstream = Upstream();
        var host = await StartAsync(_disposables, new ServiceConfig("api", [], [upstream.EndPoint]), [Route("per-client", "/", Hourly(2, RateLimitKey.Source))],
            connectionHook: c =>
            {
                if (c.RemoteEndPoint is IPEndPoint { } client && !client.Address.Equals(IPAddress.Parse("127.0.0.3")))
                {
                    c.Features.Set<Proxy.Core.Identity.IPeerIdentityFeature>(new Proxy.Core.Identity.PeerIdentityFeature(identity, Proxy.Core.Identity.PeerTransport.MutualTls));
                }
            });
        using var one = Client(From(IPAddress.Parse("127.0.0.1")));
        using var two = Client(From(IPAddress.Parse("127.0.0.2")));
        using var three = Client(From(IPAddress.Parse("127.0.0.3")));
        async Task<HttpStatusCode> GetAsync(HttpClient http)
        {
            using var response = await http.GetAsync(Url(host, "/")).WaitAsync(TestTimeout);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await GetAsync(one));
        Assert.Equal(HttpStatusCode.OK, await GetAsync(two));
        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(one));
        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(two));
        Assert.Equal(HttpStatusCode.OK, await GetAsync(three));
        Assert.Equal(HttpStatusCode.OK, await GetAsync(three));
        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(three));
        Assert.Equal(4, upstream.Requests);
    }

    [Fact]
    public async Task ServiceLimit_AppliesWithoutARoute_AndRefills()
    {
        var upstream = Upstream();
        // 20 per second, burst 2: two at once, then one every 50 ms.
        var host = await StartAsync(_disposables, new ServiceConfig("api", [], [upstream.EndPoint]) { RateLimit = new RateLimitConfig { Requests = 20, Per = TimeSpan.FromSeconds(1), Burst = 2 } });
        using var http = Client();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}")).WaitAsync(TestTimeout);
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter?.Delta);
                Assert.Contains("service api is rate limited", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }

        // The burst serves the first two; the third is usually refused, but a slow machine may have refilled a token by
        // then, so the test does not depend on it.
        Assert.Equal(HttpStatusCode.OK, statuses[0]);
        Assert.Equal(HttpStatusCode.OK, statuses[1]);

        // Refill: within a few seconds at most a request is served again.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            using var response = await http.GetAsync(Url(host, "/later")).WaitAsync(TestTimeout);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                break;
            }

            Assert.True(waited.Elapsed < TestTimeout, "the bucket never refilled");
            await Task.Delay(20);
        }

        if (statuses.Contains(HttpStatusCode.TooManyRequests))
        {
            Assert.Contains("proxy_http_rate_limited_total{listener=\"edge\",service=\"api\",route=\"\"}", await MetricsAsync(host), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Http2_RateLimited_GrpcResourceExhausted_PlainRequests429()
    {
        var upstream = Upstream();
        var host = await StartAsync(_disposables, new ServiceConfig("api", [], [upstream.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 },
            [Route("limited", "/", Hourly(1))]);
        using var http = Client();
        using (var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/first")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })
        using (var response = await http.SendAsync(request).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpVersion.Version20, response.Version);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var request = new HttpRequestMessage(HttpMethod.Get, Url(host, "/second")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })
        using (var response = await http.SendAsync(request).WaitAsync(TestTimeout))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            Assert.NotNull(response.Headers.RetryAfter);
        }

        var (status, message, reason) = await GrpcCallAsync(host);
        Assert.Equal(8, status);
        Assert.Equal("rate_limited", reason);
        Assert.Contains("route limited on listener edge is rate limited", message, StringComparison.Ordinal);
        Assert.Equal(1, upstream.Requests);
    }

    /// <summary>Connects from <paramref name="source"/> (a loopback address other than 127.0.0.1 is a different client).</summary>
    private static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> From(IPAddress source) => async (context, cancellationToken) =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.Bind(new IPEndPoint(source, 0));
            await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    };
}

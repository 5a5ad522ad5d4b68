using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

public sealed class DemoUpstreamsTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false });
    private DemoUpstreams? _upstreams;

    public async Task InitializeAsync() =>
        _upstreams = await DemoUpstreams.StartAsync(NullLoggerFactory.Instance, CancellationToken.None).WaitAsync(Timeout);

    public async Task DisposeAsync()
    {
        _http.Dispose();
        if (_upstreams is not null)
        {
            await _upstreams.DisposeAsync().AsTask().WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task V1_AnswersHelloWithVersionHeader()
    {
        Assert.Equal(IPAddress.Loopback, _upstreams!.V1.Address);
        Assert.NotEqual(0, _upstreams.V1.Port);

        using var response = await _http.GetAsync(new Uri($"http://{_upstreams.V1}/")).WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("hello from v1\n", await response.Content.ReadAsStringAsync().WaitAsync(Timeout));
        Assert.Equal(DemoTarget.V1, DemoClient.Classify(response.Headers));
    }

    [Fact]
    public async Task V2_TakesAtLeastItsExtraDelay_AndSaysV2EvenWhenFailing()
    {
        Assert.NotEqual(_upstreams!.V1.Port, _upstreams.V2.Port);
        for (var i = 0; i < 5; i++)
        {
            var started = Stopwatch.GetTimestamp();
            using var response = await _http.GetAsync(new Uri($"http://{_upstreams.V2}/")).WaitAsync(Timeout);
            var elapsed = Stopwatch.GetElapsedTime(started);

            Assert.True(elapsed >= DemoVersionBehavior.V2.ExtraDelay, $"took {elapsed}");
            Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, response.StatusCode.ToString());
            Assert.Equal(DemoTarget.V2, DemoClient.Classify(response.Headers));
            var body = await response.Content.ReadAsStringAsync().WaitAsync(Timeout);
            Assert.StartsWith(response.StatusCode == HttpStatusCode.OK ? "hello from v2" : "v2 ", body, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Classify_ProxyErrorHeader_WinsOverVersion()
    {
        using var response = new HttpResponseMessage(HttpStatusCode.BadGateway);
        response.Headers.TryAddWithoutValidation("x-version", "v1");
        response.Headers.TryAddWithoutValidation("x-proxy-error", "upstream_refused");
        Assert.Equal(DemoTarget.Proxy, DemoClient.Classify(response.Headers));

        using var other = new HttpResponseMessage(HttpStatusCode.OK);
        other.Headers.TryAddWithoutValidation("x-version", "v3");
        Assert.Equal(DemoTarget.Other, DemoClient.Classify(other.Headers));
    }
}

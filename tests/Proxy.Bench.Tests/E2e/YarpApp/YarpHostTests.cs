using System.Net;
using Microsoft.AspNetCore.Builder;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.YarpApp;
using Proxy.Bench.Tests.TestSupport;

namespace Proxy.Bench.Tests.E2e.YarpApp;

public sealed class YarpHostTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public void Parse_InlineAndSeparateValues_AreBothRead()
    {
        var options = YarpOptions.Parse(["--listen=127.0.0.1:5000", "--upstream", "127.0.0.1:6000"]);

        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 5000), options.Listen);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 6000), options.Upstream);
        Assert.Null(options.Ready);
    }

    [Fact]
    public void Parse_MissingAndBadValues_ReportsEveryOneAtOnce()
    {
        var error = Assert.Throws<E2eException>(() => YarpOptions.Parse(["--upstream", "nowhere", "--bogus", "--ready"]));

        Assert.Contains("--listen is required", error.Message, StringComparison.Ordinal);
        Assert.Contains("--upstream: 'nowhere' is not IP:PORT", error.Message, StringComparison.Ordinal);
        Assert.Contains("unknown option '--bogus'", error.Message, StringComparison.Ordinal);
        Assert.Contains("--ready needs a value", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Build_Started_ForwardsToUpstreamAndAnswersReadyOnItsOwnListener()
    {
        await using var upstream = new HelloServer();
        var options = new YarpOptions(FreePorts.Next(), upstream.EndPoint, FreePorts.Next());
        await using var app = YarpHost.Build(options);
        await app.StartAsync().WaitAsync(Timeout);
        try
        {
            using var client = new HttpClient();
            var ready = await client.GetStringAsync(new Uri($"http://{options.Ready}/anything")).WaitAsync(Timeout);
            Assert.Equal("ready\n", ready);
            Assert.Equal(0, upstream.Requests);

            for (var i = 0; i < 3; i++)
            {
                var body = await client.GetStringAsync(new Uri($"http://{options.Listen}/hello")).WaitAsync(Timeout);
                Assert.Equal("hello", body);
            }

            Assert.Equal(3, upstream.Requests);
        }
        finally
        {
            await app.StopAsync().WaitAsync(Timeout);
        }
    }

    [Fact]
    public void Parse_Http2Flag_RoundTripsThroughToArguments()
    {
        var options = YarpOptions.Parse(["--listen", "127.0.0.1:5000", "--upstream", "127.0.0.1:6000", "--http2"]);

        Assert.True(options.Http2);
        Assert.Equal("--http2", options.ToArguments()[^1]);
        Assert.Equal(options, YarpOptions.Parse([.. options.ToArguments()]));
        Assert.False(YarpOptions.Parse(["--listen", "127.0.0.1:5000", "--upstream", "127.0.0.1:6000"]).Http2);
    }

    [Fact]
    public async Task Build_Http2_ForwardsH2cPriorKnowledgeRequestsToHttp11Upstream()
    {
        await using var upstream = new HelloServer();
        var options = new YarpOptions(FreePorts.Next(), upstream.EndPoint, FreePorts.Next(), Http2: true);
        await using var app = YarpHost.Build(options);
        await app.StartAsync().WaitAsync(Timeout);
        try
        {
            using var client = new HttpClient();
            var ready = await client.GetStringAsync(new Uri($"http://{options.Ready}/anything")).WaitAsync(Timeout);
            Assert.Equal("ready\n", ready);

            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://{options.Listen}/hello"))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            using var response = await client.SendAsync(request).WaitAsync(Timeout);

            Assert.Equal(HttpVersion.Version20, response.Version);
            Assert.Equal("hello", await response.Content.ReadAsStringAsync().WaitAsync(Timeout));
            Assert.Equal(1, upstream.Requests);
        }
        finally
        {
            await app.StopAsync().WaitAsync(Timeout);
        }
    }
}

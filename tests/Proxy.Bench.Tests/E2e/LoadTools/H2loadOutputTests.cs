using System.Net;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;

namespace Proxy.Bench.Tests.E2e.LoadTools;

public sealed class H2loadOutputTests
{
    // Printed by h2load (nghttp2 1.52.0, Debian) -t1 -c16 -m10 -D 2 against nginx 1.22 "listen ... http2" (h2c).
    private const string Clean = """
        starting benchmark...
        spawning thread #0: 16 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
        Warm-up started for thread #0.
        progress: 6% of clients started
        progress: 12% of clients started
        progress: 18% of clients started
        progress: 25% of clients started
        progress: 31% of clients started
        progress: 37% of clients started
        progress: 43% of clients started
        progress: 50% of clients started
        progress: 56% of clients started
        progress: 62% of clients started
        progress: 68% of clients started
        progress: 75% of clients started
        progress: 81% of clients started
        progress: 87% of clients started
        progress: 93% of clients started
        progress: 100% of clients started
        Warm-up phase is over for thread #0.
        Main benchmark duration is started for thread #0.
        Application protocol: h2c
        Main benchmark duration is over for thread #0. Stopping all clients.
        Stopped all clients for thread #0

        finished in 2.00s, 42277.50 req/s, 3.27MB/s
        requests: 84555 total, 84715 started, 84555 done, 84555 succeeded, 0 failed, 0 errored, 0 timeout
        status codes: 84556 2xx, 0 3xx, 0 4xx, 0 5xx
        traffic: 6.53MB (6849798) total, 4.03MB (4227800) headers (space savings 49.49%), 1.05MB (1099215) data
                             min         max         mean         sd        +/- sd
        time for request:       94us     17.03ms      3.50ms      2.03ms    81.91%
        time for connect:      197us      1.09ms       676us       278us    62.50%
        time to 1st byte:    10.54ms     14.04ms     13.57ms       826us    93.75%
        req/s           :    2553.51     2784.33     2640.93       60.03    75.00%
        """;

    // h2load -t1 -c1 -m1 -D 2, same server.
    private const string Latency = """
        starting benchmark...
        spawning thread #0: 1 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
        Warm-up started for thread #0.
        progress: 100% of clients started
        Warm-up phase is over for thread #0.
        Main benchmark duration is started for thread #0.
        Application protocol: h2c
        Main benchmark duration is over for thread #0. Stopping all clients.
        Stopped all clients for thread #0

        finished in 2.02s, 11442.00 req/s, 905.10KB/s
        requests: 22884 total, 22885 started, 22884 done, 22884 succeeded, 0 failed, 0 errored, 0 timeout
        status codes: 22884 2xx, 0 3xx, 0 4xx, 0 5xx
        traffic: 1.77MB (1853653) total, 1.09MB (1144200) headers (space savings 49.49%), 290.52KB (297492) data
                             min         max         mean         sd        +/- sd
        time for request:       31us     14.23ms        80us       385us    98.76%
        time for connect:      214us       214us       214us         0us   100.00%
        time to 1st byte:      880us       880us       880us         0us   100.00%
        req/s           :   11440.88    11440.88    11440.88        0.00   100.00%
        """;

    // h2load -c1 -m1 -D 1 on a path answered 404: every request "failed", none errored.
    private const string NotFound = """
        starting benchmark...
        spawning thread #0: 1 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
        Warm-up started for thread #0.
        progress: 100% of clients started
        Warm-up phase is over for thread #0.
        Main benchmark duration is started for thread #0.
        Application protocol: h2c
        Process Request Failure:1001
        Main benchmark duration is over for thread #0. Stopping all clients.
        Stopped all clients for thread #0

        finished in 1.01s, 1000.00 req/s, 215.88KB/s
        requests: 1000 total, 1000 started, 1000 done, 0 succeeded, 1000 failed, 0 errored, 0 timeout
        status codes: 0 2xx, 0 3xx, 1000 4xx, 0 5xx
        traffic: 215.88KB (221066) total, 48.83KB (50000) headers (space savings 49.49%), 149.41KB (153000) data
                             min         max         mean         sd        +/- sd
        time for request:       33us     40.27ms       173us      1.45ms    98.20%
        time for connect:      253us       253us       253us         0us   100.00%
        time to 1st byte:     7.55ms      7.55ms      7.55ms         0us   100.00%
        req/s           :    5500.44     5500.44     5500.44        0.00   100.00%
        """;

    // h2load -c2 -m1 -D 1 to a port nobody listens on: no application protocol line, all zeros.
    private const string Refused = """
        starting benchmark...
        spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
        Warm-up started for thread #0.
        progress: 50% of clients started
        progress: 100% of clients started
        Warm-up phase is over for thread #0.
        Main benchmark duration is started for thread #0.
        Main benchmark duration is over for thread #0. Stopping all clients.
        Stopped all clients for thread #0

        finished in 1.04s, 0.00 req/s, 0B/s
        requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
        status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
        traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                             min         max         mean         sd        +/- sd
        time for request:        0us         0us         0us         0us     0.00%
        time for connect:        0us         0us         0us         0us     0.00%
        time to 1st byte:        0us         0us         0us         0us     0.00%
        req/s           :       0.00        0.00        0.00        0.00   100.00%
        """;

    // h2load -c16 -m10 -D 2 --warm-up-time=1 against nginx with keepalive_requests 1000: its GOAWAY after 1000
    // requests fails the streams in flight (h2load does not reconnect). Progress lines shortened.
    private const string GoawayFailures = """
        starting benchmark...
        spawning thread #0: 16 total client(s). Timing-based test with 1s of warm-up time and 2s of main duration for measurements.
        Warm-up started for thread #0.
        progress: 6% of clients started
        progress: 100% of clients started
        Application protocol: h2c
        Warm-up phase is over for thread #0.
        Main benchmark duration is started for thread #0.
        Process Request Failure:2
        Process Request Failure:8
        Process Request Failure:80
        Main benchmark duration is over for thread #0. Stopping all clients.
        Stopped all clients for thread #0

        finished in 3.00s, 1050.50 req/s, 82.79KB/s
        requests: 2172 total, 2100 started, 2172 done, 2101 succeeded, 71 failed, 71 errored, 0 timeout
        status codes: 2101 2xx, 0 3xx, 0 4xx, 0 5xx
        traffic: 165.58KB (169552) total, 764.91KB (783265) headers (space savings 50.51%), 202.93KB (207805) data
                             min         max         mean         sd        +/- sd
        time for request:     1.31ms     26.68ms     10.80ms      6.52ms    49.83%
        time for connect:        0us         0us         0us         0us     0.00%
        time to 1st byte:        0us         0us         0us         0us     0.00%
        req/s           :     817.59     1029.29      917.62       52.33    68.75%
        """;

    [Fact]
    public void Parse_CleanRun_ReadsCountersRateAndTimeForRequest()
    {
        var result = H2loadOutput.Parse(Clean);

        Assert.Equal(2.00, result.Seconds, 6);
        Assert.Equal(42277.50, result.RequestsPerSecond, 6);
        Assert.Equal(84555, result.Total);
        Assert.Equal(84715, result.Started);
        Assert.Equal(84555, result.Done);
        Assert.Equal(84555, result.Succeeded);
        Assert.Equal(0, result.Failed + result.Errored + result.Timeout);
        Assert.Equal(84556, result.Status2xx);
        Assert.Equal(0, result.Status3xx + result.Status4xx + result.Status5xx);
        Assert.Equal(94, result.MinMicroseconds, 6);
        Assert.Equal(17030, result.MaxMicroseconds, 6);
        Assert.Equal(3500, result.MeanMicroseconds, 6);
        Assert.Equal(2030, result.SdMicroseconds, 6);
        Assert.Equal("h2c", result.Protocol);
        Assert.True(result.IsValid);
        Assert.Null(result.InvalidReason);
    }

    [Fact]
    public void Parse_LatencyRun_ReadsMicrosecondValues()
    {
        var result = H2loadOutput.Parse(Latency);

        Assert.Equal(2.02, result.Seconds, 6);
        Assert.Equal(11442.00, result.RequestsPerSecond, 6);
        Assert.Equal(22884, result.Succeeded);
        Assert.Equal(31, result.MinMicroseconds, 6);
        Assert.Equal(14230, result.MaxMicroseconds, 6);
        Assert.Equal(80, result.MeanMicroseconds, 6);
        Assert.Equal(385, result.SdMicroseconds, 6);
        Assert.True(result.IsValid);
    }

    [Fact]
    public void Parse_NotFoundResponses_IsInvalidNamingFailuresAnd4xx()
    {
        var result = H2loadOutput.Parse(NotFound);

        Assert.Equal(1000, result.Failed);
        Assert.Equal(1000, result.Status4xx);
        Assert.False(result.IsValid);
        Assert.Contains("no request succeeded", result.InvalidReason, StringComparison.Ordinal);
        Assert.Contains("1000 failed, 0 errored, 0 timeout", result.InvalidReason, StringComparison.Ordinal);
        Assert.Contains("1000 4xx, 0 5xx", result.InvalidReason, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_ConnectionRefused_IsInvalidWithNoProtocol()
    {
        var result = H2loadOutput.Parse(Refused);

        Assert.Equal(0, result.Done);
        Assert.Equal(0, result.RequestsPerSecond, 6);
        Assert.Equal(string.Empty, result.Protocol);
        Assert.False(result.IsValid);
        Assert.Equal("no request succeeded", result.InvalidReason);
    }

    [Fact]
    public void Parse_StreamsFailedByGoaway_IsInvalidThoughMostSucceeded()
    {
        var result = H2loadOutput.Parse(GoawayFailures);

        Assert.Equal(3.00, result.Seconds, 6);
        Assert.Equal(2101, result.Succeeded);
        Assert.Equal(71, result.Errored);
        Assert.Equal(1310, result.MinMicroseconds, 6);
        Assert.False(result.IsValid);
        Assert.Equal("71 failed, 71 errored, 0 timeout", result.InvalidReason);
    }

    [Fact]
    public void Parse_NoSummary_ThrowsWithTheOutput()
    {
        var error = Assert.Throws<E2eException>(() => H2loadOutput.Parse("starting benchmark...\nconnect: Connection refused\n"));

        Assert.Contains("h2load printed no summary", error.Message, StringComparison.Ordinal);
        Assert.Contains("Connection refused", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_UnknownStatusLayout_ThrowsNamingTheMissingCount()
    {
        var text = Clean.Replace(", 0 5xx", string.Empty, StringComparison.Ordinal);

        var error = Assert.Throws<E2eException>(() => H2loadOutput.Parse(text));

        Assert.Contains("no '5xx' count", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("94us", 94)]
    [InlineData("17.03ms", 17030)]
    [InlineData("2.00s", 2000000)]
    public void ParseDuration_Units_AreMicroseconds(string text, double expected)
    {
        Assert.Equal(expected, H2loadOutput.ParseDuration(text), 6);
    }

    [Fact]
    public void Arguments_TimeBasedWithWarmUp_OneThreadClientsStreamsAndH2cUrl()
    {
        var request = new H2loadRequest(new IPEndPoint(IPAddress.Loopback, 8080), TimeSpan.FromSeconds(2), Clients: 16, Streams: 10, WarmUp: TimeSpan.FromSeconds(1));

        Assert.Equal(["-t1", "-c", "16", "-m", "10", "-D", "2", "--warm-up-time=1", "http://127.0.0.1:8080/"], request.Arguments());
    }

    [Fact]
    public void Arguments_NoWarmUp_LeavesTheOptionOut()
    {
        var request = new H2loadRequest(new IPEndPoint(IPAddress.Loopback, 8080), TimeSpan.FromSeconds(3), Clients: 1, Streams: 1);

        Assert.DoesNotContain(request.Arguments(), a => a.StartsWith("--warm-up-time", StringComparison.Ordinal));
        Assert.Equal("http://127.0.0.1:8080/", request.Arguments()[^1]);
    }
}

using System.Net;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;

namespace Proxy.Bench.Tests.E2e.LoadTools;

public sealed class WrkOutputTests
{
    // Printed by wrk 4.1.0 (Debian) against an nginx backend.
    private const string Clean = """
        Running 1s test @ http://127.0.0.1:51761/
          1 threads and 4 connections
          Thread Stats   Avg      Stdev     Max   +/- Stdev
            Latency   543.56us    1.32ms  13.49ms   91.66%
            Req/Sec    22.39k    12.83k   35.63k    50.00%
          Latency Distribution
             50%   74.00us
             75%  349.00us
             90%    1.48ms
             99%    7.22ms
          22278 requests in 1.01s, 3.42MB read
        Requests/sec:  22106.28
        Transfer/sec:      3.39MB
        """;

    private const string WithErrors = """
        Running 2s test @ http://127.0.0.1:40000/
          1 threads and 32 connections
          Thread Stats   Avg      Stdev     Max   +/- Stdev
            Latency     2.10s   500.00ms   4.90s    70.00%
            Req/Sec     1.00k   100.00     1.20k    60.00%
          Latency Distribution
             50%    2.00s
             75%    2.50s
             90%    3.00s
             99%    1.10m
          2000 requests in 2.00s, 300.00KB read
          Socket errors: connect 1, read 12, write 0, timeout 3
          Non-2xx or 3xx responses: 18
        Requests/sec:   1000.00
        Transfer/sec:    150.00KB
        """;

    [Fact]
    public void Parse_CleanRun_ReadsSummaryAndLatencyDistribution()
    {
        var result = WrkOutput.Parse(Clean);

        Assert.Equal(22278, result.Requests);
        Assert.Equal(1.01, result.Seconds, 6);
        Assert.Equal(22106.28, result.RequestsPerSecond, 6);
        Assert.Equal(74.0, result.P50Microseconds!.Value, 6);
        Assert.Equal(349.0, result.P75Microseconds!.Value, 6);
        Assert.Equal(1480.0, result.P90Microseconds!.Value, 6);
        Assert.Equal(7220.0, result.P99Microseconds!.Value, 6);
        Assert.Equal(0, result.SocketErrors.Total);
        Assert.Equal(0, result.Non2xx3xx);
        Assert.True(result.IsValid);
        Assert.Null(result.InvalidReason);
    }

    [Fact]
    public void Parse_SocketErrorsAndNon2xx_MarksRunInvalidNamingEveryCount()
    {
        var result = WrkOutput.Parse(WithErrors);

        Assert.Equal(new WrkSocketErrors(1, 12, 0, 3), result.SocketErrors);
        Assert.Equal(18, result.Non2xx3xx);
        Assert.Equal(2_000_000.0, result.P50Microseconds!.Value, 6);
        Assert.Equal(66_000_000.0, result.P99Microseconds!.Value, 6);
        Assert.False(result.IsValid);
        Assert.Equal("socket errors: connect 1, read 12, write 0, timeout 3; 18 non-2xx/3xx responses", result.InvalidReason);
    }

    [Fact]
    public void Parse_OnlyNon2xx_IsInvalid()
    {
        var text = Clean.Replace("Requests/sec:", "  Non-2xx or 3xx responses: 22278\nRequests/sec:", StringComparison.Ordinal);

        var result = WrkOutput.Parse(text);

        Assert.Equal("22278 non-2xx/3xx responses", result.InvalidReason);
    }

    [Fact]
    public void Parse_WithoutLatencyDistribution_LeavesPercentilesEmpty()
    {
        var text = """
              1 threads and 1 connections
              500 requests in 1.00s, 60.00KB read
            Requests/sec:    500.00
            """;

        var result = WrkOutput.Parse(text);

        Assert.Equal(500, result.Requests);
        Assert.Null(result.P50Microseconds);
        Assert.Null(result.P99Microseconds);
        Assert.True(result.IsValid);
    }

    [Fact]
    public void Parse_NoRequestsCompleted_IsInvalid()
    {
        var text = """
              0 requests in 2.00s, 0.00B read
              Socket errors: connect 32, read 0, write 0, timeout 0
            Requests/sec:      0.00
            """;

        var result = WrkOutput.Parse(text);

        Assert.Equal("no requests completed; socket errors: connect 32, read 0, write 0, timeout 0", result.InvalidReason);
    }

    [Theory]
    [InlineData("unable to connect to 127.0.0.1:1 Connection refused")]
    [InlineData("")]
    [InlineData("  100 requests in 1.00s, 1KB read\n")]
    public void Parse_NoSummary_Throws(string text)
    {
        var error = Assert.Throws<E2eException>(() => WrkOutput.Parse(text));

        Assert.Contains("no summary", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_UnknownSocketErrorKind_Throws()
    {
        var text = Clean.Replace("Requests/sec:", "  Socket errors: connect 0, reset 2\nRequests/sec:", StringComparison.Ordinal);

        var error = Assert.Throws<E2eException>(() => WrkOutput.Parse(text));

        Assert.Contains("reset", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("812.00us", 812)]
    [InlineData("1.23ms", 1230)]
    [InlineData("2.00s", 2_000_000)]
    [InlineData("1.50m", 90_000_000)]
    [InlineData("1.00h", 3_600_000_000)]
    public void ParseDuration_EveryUnit_ReturnsMicroseconds(string text, double expected)
    {
        Assert.Equal(expected, WrkOutput.ParseDuration(text), 6);
    }

    [Theory]
    [InlineData("12")]
    [InlineData("fast")]
    [InlineData("1.0ns")]
    public void ParseDuration_Unreadable_Throws(string text)
    {
        Assert.Throws<E2eException>(() => WrkOutput.ParseDuration(text));
    }

    [Fact]
    public void Arguments_KeepAlive_OneThreadLatencyAndUrl()
    {
        var request = new WrkRequest(new IPEndPoint(IPAddress.Loopback, 40002), TimeSpan.FromSeconds(3), 32, ConnectionClose: false);

        Assert.Equal(["-t1", "-c", "32", "-d", "3s", "--latency", "--timeout", "5s", "http://127.0.0.1:40002/"], request.Arguments());
    }

    [Fact]
    public void Arguments_ConnectionClose_AddsHeaderAsOneArgument()
    {
        var request = new WrkRequest(new IPEndPoint(IPAddress.Loopback, 40002), TimeSpan.FromSeconds(2), 32, ConnectionClose: true);

        var arguments = request.Arguments();

        Assert.Equal(["-H", "Connection: close"], arguments.Skip(8).Take(2));
        Assert.Equal("http://127.0.0.1:40002/", arguments[^1]);
    }
}

using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class TimeoutFaultConfigTests
{
    private static ConfigResult Load(string route, string top = "", Dictionary<string, string>? flags = null)
        => ConfigLoader.Load(flags ?? [], $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off" {{top}},
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] } ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "routes": [ { "name": "r", "action": { "service": "web" } {{route}} } ] } ] }
            """);

    private static RouteConfig OnlyRoute(ConfigResult result)
    {
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        return result.Config!.Listeners[0].Routes[0];
    }

    [Fact]
    public void Defaults_RequestOff_StreamIdle5m_Header10s()
    {
        var result = Load("");
        var route = OnlyRoute(result);
        Assert.Null(route.Timeouts);
        Assert.Null(route.Fault);
        var http = result.Config!.Http;
        Assert.Equal(Timeout.InfiniteTimeSpan, http.RequestTimeout);
        Assert.Equal(TimeSpan.FromMinutes(5), http.StreamIdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), http.HeaderTimeout);
    }

    [Fact]
    public void GlobalTimeouts_FromFileAndFlags_FlagsWin()
    {
        var result = Load("", """, "http": { "requestTimeout": "30s", "streamIdleTimeout": "off", "headerTimeout": "5s" }""",
            new Dictionary<string, string> { ["http-header-timeout"] = "2s" });
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var http = result.Config!.Http;
        Assert.Equal(TimeSpan.FromSeconds(30), http.RequestTimeout);
        Assert.Equal(Timeout.InfiniteTimeSpan, http.StreamIdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), http.HeaderTimeout);
    }

    [Theory]
    [InlineData("http-request-timeout", "soon")]
    [InlineData("http-stream-idle-timeout", "-1s")]
    [InlineData("http-header-timeout", "10 parsecs")]
    public void GlobalTimeouts_BadFlag_ErrorNamesTheFlag(string flag, string value)
    {
        var result = Load("", flags: new Dictionary<string, string> { [flag] = value });
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith($"--{flag}: ", StringComparison.Ordinal));
    }

    [Fact]
    public void RouteTimeouts_EveryKeyRead_ZeroMeansOff()
    {
        var timeouts = OnlyRoute(Load(""", "timeouts": { "request": "10s", "perTry": "0s", "idle": "off", "connect": "250ms" }""")).Timeouts!;
        Assert.Equal(TimeSpan.FromSeconds(10), timeouts.Request);
        Assert.Equal(Timeout.InfiniteTimeSpan, timeouts.PerTry);
        Assert.Equal(Timeout.InfiniteTimeSpan, timeouts.Idle);
        Assert.Equal(TimeSpan.FromMilliseconds(250), timeouts.Connect);

        var partial = OnlyRoute(Load(""", "timeouts": { "perTry": "2s" }""")).Timeouts!;
        Assert.Equal(new RouteTimeoutsConfig { PerTry = TimeSpan.FromSeconds(2) }, partial);
    }

    [Fact]
    public void Fault_EveryKeyRead_PercentageDefaults100_GrpcStatusByNameOrNumber()
    {
        var fault = OnlyRoute(Load("""
            , "fault": { "delay": { "duration": "1.5s", "percentage": 12.5 },
                         "abort": { "httpStatus": 503, "grpcStatus": "UNAVAILABLE" }, "headerControl": true }
            """)).Fault!;
        Assert.Equal(new FaultDelayConfig(TimeSpan.FromMilliseconds(1500), 12.5), fault.Delay);
        Assert.Equal(new FaultAbortConfig { HttpStatus = 503, GrpcStatus = 14, Percentage = 100 }, fault.Abort);
        Assert.True(fault.HeaderControl);

        var numeric = OnlyRoute(Load(""", "fault": { "abort": { "grpcStatus": 8, "percentage": 0.5 } }""")).Fault!;
        Assert.Equal(new FaultAbortConfig { GrpcStatus = 8, Percentage = 0.5 }, numeric.Abort);
        Assert.Null(numeric.Delay);
        Assert.False(numeric.HeaderControl);
    }

    [Theory]
    [InlineData(""", "timeouts": { "request": "1s", "perTry": "2s" }""", "listeners[0].routes[0].timeouts.perTry: 2s is longer than request 1s")]
    [InlineData(""", "timeouts": { "request": "soon" }""", "listeners[0].routes[0].timeouts.request: \"soon\" is not a duration")]
    [InlineData(""", "timeouts": { "connect": "off" }""", "listeners[0].routes[0].timeouts.connect: \"off\" is not a duration")]
    [InlineData(""", "timeouts": { "total": "1s" }""", "listeners[0].routes[0].timeouts.total: unknown key")]
    [InlineData(""", "timeouts": 5""", "listeners[0].routes[0].timeouts: must be an object")]
    [InlineData(""", "fault": {}""", "listeners[0].routes[0].fault: needs a delay, an abort or headerControl: true")]
    [InlineData(""", "fault": { "delay": { "percentage": 10 } }""", "listeners[0].routes[0].fault.delay.duration: missing")]
    [InlineData(""", "fault": { "delay": { "duration": "1s", "percentage": 101 } }""", "listeners[0].routes[0].fault.delay.percentage: must be a number from 0 to 100")]
    [InlineData(""", "fault": { "abort": { "percentage": 10 } }""", "listeners[0].routes[0].fault.abort: needs httpStatus or grpcStatus")]
    [InlineData(""", "fault": { "abort": { "httpStatus": 99 } }""", "listeners[0].routes[0].fault.abort.httpStatus: must be an HTTP status code from 200 to 599")]
    [InlineData(""", "fault": { "abort": { "grpcStatus": "NOPE" } }""", "listeners[0].routes[0].fault.abort.grpcStatus: must be a gRPC status from 1 to 16")]
    [InlineData(""", "fault": { "abort": { "grpcStatus": 0 } }""", "listeners[0].routes[0].fault.abort.grpcStatus: must be a gRPC status from 1 to 16")]
    [InlineData(""", "fault": { "headerControl": "yes" }""", "listeners[0].routes[0].fault.headerControl: must be true or false")]
    [InlineData(""", "fault": { "delay": { "duration": "1s", "jitter": 1 } }""", "listeners[0].routes[0].fault.delay.jitter: unknown key")]
    public void Invalid_ErrorNamesTheKey(string route, string expected)
    {
        var result = Load(route);
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void ToJson_RoundTrips()
    {
        var first = Load("""
            , "timeouts": { "request": "10s", "perTry": "off", "idle": "30s", "connect": "1s" },
              "fault": { "delay": { "duration": "250ms", "percentage": 5 }, "abort": { "grpcStatus": 14, "percentage": 1.25 }, "headerControl": true }
            """, """, "http": { "requestTimeout": "1m", "headerTimeout": "3s" }""");
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        var json = ConfigJson.ToJson(first.Config!);
        Assert.Contains("\"requestTimeout\": \"1m\"", json, StringComparison.Ordinal);
        Assert.Contains("\"streamIdleTimeout\": \"5m\"", json, StringComparison.Ordinal);
        Assert.Contains("\"grpcStatus\": \"UNAVAILABLE\"", json, StringComparison.Ordinal);
        var second = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        var route = second.Config!.Listeners[0].Routes[0];
        Assert.Equal(first.Config!.Listeners[0].Routes[0].Timeouts, route.Timeouts);
        Assert.Equal(first.Config.Listeners[0].Routes[0].Fault, route.Fault);
    }
}

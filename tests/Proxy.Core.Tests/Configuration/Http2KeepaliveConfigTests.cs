using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class Http2KeepaliveConfigTests
{
    private static ConfigResult Load(string service, Dictionary<string, string>? flags = null)
        => ConfigLoader.Load(flags ?? [], $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{service}} } ] }
            """);

    [Fact]
    public void Defaults_OnWithInterval30sTimeout10s_ServiceKeyAbsent()
    {
        var result = Load("");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(TimeSpan.FromSeconds(30), result.Config!.Http.Http2KeepaliveInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), result.Config.Http.Http2KeepaliveTimeout);
        Assert.Null(result.Config.Services[0].Http2Keepalive);
        var json = ConfigJson.ToJson(result.Config);
        Assert.Contains("\"h2KeepaliveInterval\": \"30s\"", json, StringComparison.Ordinal);
        Assert.Contains("\"h2KeepaliveTimeout\": \"10s\"", json, StringComparison.Ordinal);
        Assert.DoesNotContain("http2Keepalive", json, StringComparison.Ordinal);
    }

    [Fact]
    public void ServiceKey_ExplicitValues_ReadAndPrintedByConfig_AndLoadedBack()
    {
        var result = Load(""", "http2Keepalive": { "interval": "15s", "timeout": "2500ms" }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var keepalive = result.Config!.Services[0].Http2Keepalive!;
        Assert.Equal(TimeSpan.FromSeconds(15), keepalive.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(2500), keepalive.Timeout);

        var json = ConfigJson.ToJson(result.Config);
        Assert.Contains("\"http2Keepalive\": {", json, StringComparison.Ordinal);
        Assert.Contains("\"interval\": \"15s\"", json, StringComparison.Ordinal);
        Assert.Contains("\"timeout\": \"2500ms\"", json, StringComparison.Ordinal);
        var again = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(again.Ok, string.Join("\n", again.Errors));
        Assert.Equal(keepalive, again.Config!.Services[0].Http2Keepalive);
    }

    [Fact]
    public void ServiceKey_IntervalOff_TimeoutLeftToTheDefault()
    {
        var result = Load(""", "http2Keepalive": { "interval": "off" }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var keepalive = result.Config!.Services[0].Http2Keepalive!;
        Assert.Equal(Timeout.InfiniteTimeSpan, keepalive.Interval);
        Assert.Null(keepalive.Timeout);
    }

    [Fact]
    public void Flags_SetTheDefaults_OffAllowedForTheInterval()
    {
        var result = Load("", new Dictionary<string, string> { ["h2-keepalive-interval"] = "off", ["h2-keepalive-timeout"] = "3s" });
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(Timeout.InfiniteTimeSpan, result.Config!.Http.Http2KeepaliveInterval);
        Assert.Equal(TimeSpan.FromSeconds(3), result.Config.Http.Http2KeepaliveTimeout);
    }

    [Theory]
    [InlineData("""{ "interval": "soon" }""", "services[0].http2Keepalive.interval: \"soon\" is not a duration")]
    [InlineData("""{ "interval": "10ms" }""", "services[0].http2Keepalive.interval: 10ms is out of range (100ms to 24h, or off)")]
    [InlineData("""{ "interval": 30 }""", "services[0].http2Keepalive.interval")]
    [InlineData("""{ "timeout": "off" }""", "services[0].http2Keepalive.timeout: \"off\" is not a duration")]
    [InlineData("""{ "timeout": "11m" }""", "services[0].http2Keepalive.timeout: 11m is out of range (100ms to 10m)")]
    [InlineData("""{ "intervall": "5s" }""", "services[0].http2Keepalive.intervall")]
    [InlineData("\"30s\"", "services[0].http2Keepalive: must be an object")]
    public void ServiceKey_BadValue_ErrorNamesTheKey(string value, string expected)
    {
        var result = Load($", \"http2Keepalive\": {value}");
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Flags_BadValues_BothReportedNamingTheFlags()
    {
        var result = Load("", new Dictionary<string, string> { ["h2-keepalive-interval"] = "0s", ["h2-keepalive-timeout"] = "off" });
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith("--h2-keepalive-interval: ", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.StartsWith("--h2-keepalive-timeout: ", StringComparison.Ordinal));
    }
}

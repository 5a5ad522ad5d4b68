using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class HealthConfigTests
{
    private static ConfigResult Load(string service)
        => ConfigLoader.Load(new Dictionary<string, string>(), $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{service}} } ] }
            """);

    [Fact]
    public void OutlierDetectionAndHealthCheck_EveryKeyRead()
    {
        var result = Load("""
            , "outlierDetection": { "consecutive5xx": 3, "consecutiveGatewayFailure": 2, "consecutiveLocalOriginFailure": 4, "interval": "1s",
                                    "baseEjectionTime": "5s", "maxEjectionTime": "1m", "maxEjectionPercent": 50, "successRateMinimumHosts": 3,
                                    "successRateRequestVolume": 20, "successRateStdevFactor": 1.5 },
              "healthCheck": { "type": "http", "path": "/healthz", "host": "web.local", "expectedStatuses": [204, "200-299"], "interval": "2s",
                               "timeout": "300ms", "healthyThreshold": 1, "unhealthyThreshold": 2 }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var service = result.Config!.Services[0];
        Assert.Equal(new OutlierDetectionConfig
        {
            Consecutive5xx = 3,
            ConsecutiveGatewayFailure = 2,
            ConsecutiveLocalOriginFailure = 4,
            Interval = TimeSpan.FromSeconds(1),
            BaseEjectionTime = TimeSpan.FromSeconds(5),
            MaxEjectionTime = TimeSpan.FromMinutes(1),
            MaxEjectionPercent = 50,
            SuccessRateMinimumHosts = 3,
            SuccessRateRequestVolume = 20,
            SuccessRateStdevFactor = 1.5,
        }, service.OutlierDetection);
        var check = service.HealthCheck!;
        Assert.Equal(HealthCheckType.Http, check.Type);
        Assert.Equal("/healthz", check.Path);
        Assert.Equal("web.local", check.Host);
        Assert.Equal([new StatusRange(204, 204), new StatusRange(200, 299)], check.ExpectedStatuses);
        Assert.Equal(TimeSpan.FromSeconds(2), check.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(300), check.Timeout);
        Assert.Equal(1, check.HealthyThreshold);
        Assert.Equal(2, check.UnhealthyThreshold);
        Assert.True(check.IsExpected(250));
        Assert.False(check.IsExpected(301));
    }

    [Fact]
    public void EmptyObjects_Defaults_AbsentKeys_Off()
    {
        var result = Load(""", "outlierDetection": {}, "healthCheck": { "type": "tcp" }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(new OutlierDetectionConfig(), result.Config!.Services[0].OutlierDetection);
        Assert.Equal(HealthCheckType.Tcp, result.Config.Services[0].HealthCheck!.Type);

        var none = Load("");
        Assert.Null(none.Config!.Services[0].OutlierDetection);
        Assert.Null(none.Config.Services[0].HealthCheck);
    }

    [Theory]
    [InlineData(""", "outlierDetection": { "consecutive5xx": -1 }""", "services[0].outlierDetection.consecutive5xx: must be a whole number from 0 to 1000")]
    [InlineData(""", "outlierDetection": { "maxEjectionPercent": 101 }""", "services[0].outlierDetection.maxEjectionPercent: must be a whole number from 0 to 100")]
    [InlineData(""", "outlierDetection": { "interval": "soon" }""", "services[0].outlierDetection.interval: ")]
    [InlineData(""", "outlierDetection": { "baseEjectionTime": "1m", "maxEjectionTime": "10s" }""", "services[0].outlierDetection.maxEjectionTime: 10s is shorter than baseEjectionTime 1m")]
    [InlineData(""", "outlierDetection": { "successRateStdevFactor": 1900 }""", "services[0].outlierDetection.successRateStdevFactor: must be a number above 0 and at most 100")]
    [InlineData(""", "outlierDetection": { "consecutive_5xx": 5 }""", "services[0].outlierDetection.consecutive_5xx: unknown key")]
    [InlineData(""", "outlierDetection": true""", "services[0].outlierDetection: must be an object")]
    [InlineData(""", "healthCheck": { "type": "grpc" }""", "services[0].healthCheck.type: must be \"http\" or \"tcp\"")]
    [InlineData(""", "healthCheck": { "path": "healthz" }""", "services[0].healthCheck.path: must start with /")]
    [InlineData(""", "healthCheck": { "expectedStatuses": ["300-200"] }""", "services[0].healthCheck.expectedStatuses[0]: must be a status (100-599) or a range")]
    [InlineData(""", "healthCheck": { "expectedStatuses": [] }""", "services[0].healthCheck.expectedStatuses: must list at least one status")]
    [InlineData(""", "healthCheck": { "timeout": "0s" }""", "services[0].healthCheck.timeout: ")]
    [InlineData(""", "healthCheck": { "unhealthyThreshold": 0 }""", "services[0].healthCheck.unhealthyThreshold: must be a whole number from 1 to 100")]
    [InlineData(""", "healthCheck": { "type": "tcp", "path": "/x" }""", "services[0].healthCheck.path: only used with \"type\": \"http\"")]
    public void Invalid_ErrorNamesTheKey(string service, string expected)
    {
        var result = Load(service);
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void ToJson_RoundTrips()
    {
        var first = Load("""
            , "outlierDetection": { "consecutive5xx": 3, "baseEjectionTime": "5s", "successRateStdevFactor": 2.5 },
              "healthCheck": { "path": "/healthz", "expectedStatuses": [204, "200-202"], "interval": "2s" }
            """);
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        var json = ConfigJson.ToJson(first.Config!);
        Assert.Contains("\"outlierDetection\"", json, StringComparison.Ordinal);
        Assert.Contains("\"healthCheck\"", json, StringComparison.Ordinal);
        var second = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        Assert.Equal(first.Config!.Services[0].OutlierDetection, second.Config!.Services[0].OutlierDetection);
        Assert.Equal(first.Config.Services[0].HealthCheck!.ExpectedStatuses, second.Config.Services[0].HealthCheck!.ExpectedStatuses);
    }
}

using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class LimitsConfigTests
{
    private static ConfigResult Load(string service, string route = "")
        => ConfigLoader.Load(new Dictionary<string, string>(), $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{service}} } ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "routes": [ { "name": "api", "action": { "service": "web" } {{route}} } ] } ] }
            """);

    [Fact]
    public void CircuitBreakers_EveryKeyRead()
    {
        var result = Load("""
            , "circuitBreakers": { "maxConnections": 10, "maxPendingRequests": 20, "maxRequests": 30, "maxRetries": 0 }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(new CircuitBreakersConfig { MaxConnections = 10, MaxPendingRequests = 20, MaxRequests = 30, MaxRetries = 0 }, result.Config!.Services[0].CircuitBreakers);
    }

    [Fact]
    public void CircuitBreakers_EmptyObjectTakesEnvoysDefaults_AbsentMeansNoLimits()
    {
        var result = Load(""", "circuitBreakers": {}""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var breakers = result.Config!.Services[0].CircuitBreakers!;
        Assert.Equal((1024, 1024, 1024, 3), (breakers.MaxConnections, breakers.MaxPendingRequests, breakers.MaxRequests, breakers.MaxRetries));
        Assert.Null(Load("").Config!.Services[0].CircuitBreakers);
    }

    [Fact]
    public void RateLimit_OnRouteAndService_EveryKeyRead()
    {
        var result = Load(""", "rateLimit": { "requests": 5, "per": "1m", "burst": 10, "by": "source" }""",
            """, "rateLimit": { "requests": 100 }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(new RateLimitConfig { Requests = 5, Per = TimeSpan.FromMinutes(1), Burst = 10, By = RateLimitKey.Source }, result.Config!.Services[0].RateLimit);
        // Defaults: per 1s, burst = requests, by route.
        Assert.Equal(new RateLimitConfig { Requests = 100, Per = TimeSpan.FromSeconds(1), Burst = 100, By = RateLimitKey.Route }, result.Config.Listeners[0].Routes[0].RateLimit);
        Assert.Equal("5 requests per 1m (burst 10) per source", result.Config.Services[0].RateLimit!.Describe());
    }

    [Theory]
    [InlineData(""", "circuitBreakers": { "maxConnections": 0 }""", "services[0].circuitBreakers.maxConnections: must be a whole number from 1 to 1000000, not 0")]
    [InlineData(""", "circuitBreakers": { "maxPendingRequests": 0 }""", "services[0].circuitBreakers.maxPendingRequests: must be a whole number from 1")]
    [InlineData(""", "circuitBreakers": { "maxRequests": "many" }""", "services[0].circuitBreakers.maxRequests: must be a whole number")]
    [InlineData(""", "circuitBreakers": { "maxRetries": -1 }""", "services[0].circuitBreakers.maxRetries: must be a whole number from 0")]
    [InlineData(""", "circuitBreakers": { "maxStreams": 1 }""", "services[0].circuitBreakers.maxStreams: unknown key")]
    [InlineData(""", "circuitBreakers": 5""", "services[0].circuitBreakers: must be an object")]
    [InlineData(""", "rateLimit": {}""", "services[0].rateLimit.requests: missing")]
    [InlineData(""", "rateLimit": { "requests": 0 }""", "services[0].rateLimit.requests: must be a whole number from 1")]
    [InlineData(""", "rateLimit": { "requests": 1, "per": "soon" }""", "services[0].rateLimit.per: \"soon\" is not a duration")]
    [InlineData(""", "rateLimit": { "requests": 1, "burst": 0 }""", "services[0].rateLimit.burst: must be a whole number from 1")]
    [InlineData(""", "rateLimit": { "requests": 1, "by": "header" }""", "services[0].rateLimit.by: \"header\" is not a rate limit key (route, source)")]
    [InlineData(""", "rateLimit": { "requests": 1, "window": "1s" }""", "services[0].rateLimit.window: unknown key")]
    public void Invalid_ErrorNamesTheKey(string service, string expected)
    {
        var result = Load(service);
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void InvalidRouteRateLimit_ErrorNamesTheRoute()
    {
        var result = Load("", """, "rateLimit": { "requests": 1, "per": "2d" }""");
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith("listeners[0].routes[0].rateLimit.per: ", StringComparison.Ordinal));
    }

    [Fact]
    public void ToJson_RoundTrips()
    {
        var first = Load("""
            , "circuitBreakers": { "maxConnections": 2, "maxRetries": 1 }, "rateLimit": { "requests": 7, "per": "250ms", "by": "source" }
            """, """, "rateLimit": { "requests": 100, "burst": 150 }""");
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        var json = ConfigJson.ToJson(first.Config!);
        Assert.Contains("\"circuitBreakers\":{\"maxConnections\":2,\"maxPendingRequests\":1024,\"maxRequests\":1024,\"maxRetries\":1}", json.Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal), StringComparison.Ordinal);
        var second = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        Assert.Equal(first.Config!.Services[0].CircuitBreakers, second.Config!.Services[0].CircuitBreakers);
        Assert.Equal(first.Config.Services[0].RateLimit, second.Config.Services[0].RateLimit);
        Assert.Equal(first.Config.Listeners[0].Routes[0].RateLimit, second.Config.Listeners[0].Routes[0].RateLimit);
    }
}

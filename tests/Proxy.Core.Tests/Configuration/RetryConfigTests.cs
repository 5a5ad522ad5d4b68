using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Configuration;

public sealed class RetryConfigTests
{
    private static ConfigResult Load(string service, string route = "")
        => ConfigLoader.Load(new Dictionary<string, string>(), $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{service}} } ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "routes": [ { "action": { "service": "web" } {{route}} } ] } ] }
            """);

    [Fact]
    public void Service_RetriesAndBudget_EveryKeyRead()
    {
        var result = Load("""
            , "retries": { "maxRetries": 3, "on": ["connect-failure", "5xx", "retriable-status-codes"], "statusCodes": [409, 429],
                           "backoff": "10ms", "maxBackoff": "1s", "nonIdempotent": true, "maxBodyBytes": 1000 },
              "retryBudget": { "ratio": 0.5, "minPerSecond": 3 }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var service = result.Config!.Services[0];
        var retries = service.Retries!;
        Assert.Equal(3, retries.MaxRetries);
        Assert.Equal(RetryOn.ConnectFailure | RetryOn.Status5xx | RetryOn.RetriableStatusCodes, retries.On);
        Assert.Equal([409, 429], retries.StatusCodes);
        Assert.Equal(TimeSpan.FromMilliseconds(10), retries.Backoff);
        Assert.Equal(TimeSpan.FromSeconds(1), retries.MaxBackoff);
        Assert.True(retries.NonIdempotent);
        Assert.Equal(1000, retries.MaxBodyBytes);
        Assert.Equal(new RetryBudgetConfig { Ratio = 0.5, MinPerSecond = 3 }, service.RetryBudget);
    }

    [Fact]
    public void Route_RetriesWithDefaults()
    {
        var result = Load("", """, "retries": {}""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var retries = result.Config!.Listeners[0].Routes[0].Retries!;
        Assert.Equal(new RetryPolicyConfig(), retries);
        Assert.Equal(2, retries.MaxRetries);
        Assert.Equal(RetryOn.ConnectFailure | RetryOn.RefusedStream | RetryOn.Reset | RetryOn.GatewayError, retries.On);
        Assert.Equal(64 * 1024, retries.MaxBodyBytes);
        Assert.Null(result.Config.Services[0].Retries);
    }

    [Fact]
    public void GrpcConditions_ByEnvoysNames()
    {
        var result = Load("""
            , "retries": { "on": ["cancelled", "deadline-exceeded", "resource-exhausted", "internal", "unavailable", "reset"], "maxBodyBytes": 0 }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var retries = result.Config!.Services[0].Retries!;
        Assert.Equal(RetryOn.AnyGrpc | RetryOn.Reset, retries.On);
        Assert.Equal(0, retries.MaxBodyBytes);
        Assert.Contains("\"unavailable\"", ConfigJson.ToJson(result.Config), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(""", "retries": { "maxRetries": 0 }""", "services[0].retries.maxRetries: must be a whole number from 1 to 10")]
    [InlineData(""", "retries": { "on": ["teapot"] }""", "services[0].retries.on[0]: \"teapot\" is not a retry condition")]
    [InlineData(""", "retries": { "on": [] }""", "services[0].retries.on: must list at least one condition")]
    [InlineData(""", "retries": { "on": ["retriable-status-codes"] }""", "services[0].retries.statusCodes: missing")]
    [InlineData(""", "retries": { "statusCodes": [409] }""", "services[0].retries.statusCodes: only used with the condition retriable-status-codes")]
    [InlineData(""", "retries": { "on": ["retriable-status-codes"], "statusCodes": [99] }""", "services[0].retries.statusCodes[0]: must be an HTTP status code")]
    [InlineData(""", "retries": { "backoff": "1s", "maxBackoff": "10ms" }""", "services[0].retries.maxBackoff: 10ms is shorter than backoff 1s")]
    [InlineData(""", "retries": { "backoff": "0s" }""", "services[0].retries.backoff: ")]
    [InlineData(""", "retries": { "tries": 2 }""", "services[0].retries.tries: unknown key")]
    [InlineData(""", "retries": 2""", "services[0].retries: must be an object")]
    [InlineData(""", "retries": { "maxBodyBytes": -1 }""", "services[0].retries.maxBodyBytes: must be a whole number of bytes from 0 to 16777216")]
    [InlineData(""", "retries": { "maxBodyBytes": "64k" }""", "services[0].retries.maxBodyBytes: must be a whole number of bytes")]
    [InlineData(""", "retryBudget": { "ratio": 2 }""", "services[0].retryBudget.ratio: must be a number from 0 to 1")]
    [InlineData(""", "retryBudget": { "minPerSecond": -1 }""", "services[0].retryBudget.minPerSecond: must be a whole number")]
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
            , "retries": { "maxRetries": 3, "on": ["reset", "retriable-status-codes"], "statusCodes": [409], "backoff": "10ms", "maxBackoff": "1s" },
              "retryBudget": { "ratio": 0.25, "minPerSecond": 0 }
            """, """, "retries": { "maxRetries": 1 }""");
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        var json = ConfigJson.ToJson(first.Config!);
        var second = ConfigLoader.Load(new Dictionary<string, string>(), json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        var before = first.Config!.Services[0].Retries!;
        var after = second.Config!.Services[0].Retries!;
        Assert.Equal(before, after with { StatusCodes = before.StatusCodes });
        Assert.Equal([409], after.StatusCodes);
        Assert.Equal(0.25, second.Config.Services[0].RetryBudget.Ratio);
    }

    [Fact]
    public void Budget_RatioOfTheLastTenSecondsPlusTheFloor()
    {
        var time = new ManualTimeProvider();
        time.Advance(TimeSpan.FromSeconds(1_000));
        var budget = new RetryBudget(new RetryBudgetConfig { Ratio = 0.2, MinPerSecond = 1 }, time);

        // Floor: 1 per second over the 10 s window = 10 retries with no traffic at all.
        for (var i = 0; i < 10; i++)
        {
            Assert.True(budget.TryRetry());
        }

        Assert.False(budget.TryRetry());

        // 50 requests earn 10 more.
        for (var i = 0; i < 50; i++)
        {
            budget.OnRequest();
        }

        for (var i = 0; i < 10; i++)
        {
            Assert.True(budget.TryRetry());
        }

        Assert.False(budget.TryRetry());

        // Ten seconds later the window has forgotten all of it: the floor again.
        time.Advance(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 10; i++)
        {
            Assert.True(budget.TryRetry());
        }

        Assert.False(budget.TryRetry());
    }
}

using Proxy.Core.Configuration;
using System.Text;
using Proxy.Http.Routing;
using static Proxy.Http.Tests.Routing.RoutingTestHelpers;

namespace Proxy.Http.Tests.Routing;

public sealed class RouteActionTests
{
    private static RouteAction Action(string action) =>
        Table($$"""[{ "name": "r", "action": {{action}} }]""").Routes[0].Action;

    [Fact]
    public void PickDestination_SingleService_NeverConsultsRandom()
    {
        var action = Action("""{ "service": "web", "subset": "v1" }""");
        var random = new ThrowingRandomSource();
        var d = action.PickDestination(random);
        Assert.Equal("web", d.Service);
        Assert.Equal("v1", d.Subset);
        Assert.False(action.IsSplit);
    }

    [Theory]
    [InlineData(90, 10)]
    [InlineData(1, 1)]
    [InlineData(999, 1)]
    [InlineData(3, 7)]
    public void PickDestination_TwoWaySplit_ProportionsWithinStatisticalBounds(int w1, int w2)
    {
        var action = Action($$"""{ "split": [{ "service": "web", "subset": "v1", "weight": {{w1}} }, { "service": "web", "subset": "v2", "weight": {{w2}} }] }""");
        var random = new SeededRandomSource(12345);
        const int N = 10_000;
        var v2 = 0;
        for (var i = 0; i < N; i++)
        {
            if (action.PickDestination(random).Subset == "v2")
            {
                v2++;
            }
        }

        // Binomial: mean N p, standard deviation sqrt(N p (1-p)); 5 sigma (plus one for tiny p) fails ~1 in 3.5 million.
        var p = (double)w2 / (w1 + w2);
        var sigma = Math.Sqrt(N * p * (1 - p));
        Assert.InRange(v2, (N * p) - (5 * sigma) - 1, (N * p) + (5 * sigma) + 1);
    }

    [Fact]
    public void PickDestination_ThreeWaySplit_EachShareWithinBounds()
    {
        var action = Action("""{ "split": [{ "service": "a", "weight": 50 }, { "service": "b", "weight": 30 }, { "service": "c", "weight": 20 }] }""");
        var random = new SeededRandomSource(7);
        const int N = 10_000;
        var counts = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0 };
        for (var i = 0; i < N; i++)
        {
            counts[action.PickDestination(random).Service]++;
        }

        foreach (var (name, weight) in new[] { ("a", 50), ("b", 30), ("c", 20) })
        {
            var p = weight / 100.0;
            var sigma = Math.Sqrt(N * p * (1 - p));
            Assert.InRange(counts[name], (N * p) - (5 * sigma), (N * p) + (5 * sigma));
        }
    }

    [Fact]
    public void PickDestination_ScriptedRandom_BoundariesFollowCumulativeWeights()
    {
        var action = Action("""{ "split": [{ "service": "a", "weight": 90 }, { "service": "b", "weight": 10 }] }""");
        Assert.Equal("a", action.PickDestination(new ScriptedRandomSource(0)).Service);
        Assert.Equal("a", action.PickDestination(new ScriptedRandomSource(89)).Service);
        Assert.Equal("b", action.PickDestination(new ScriptedRandomSource(90)).Service);
        Assert.Equal("b", action.PickDestination(new ScriptedRandomSource(99)).Service);
        Assert.True(action.IsSplit);
        Assert.Equal(2, action.Destinations.Length);
    }

    [Fact]
    public void HeaderMutations_SetAddRemove_EncodedAndQueryable()
    {
        var action = Action("""
            { "service": "web",
              "requestHeaders": { "set": [{ "name": "X-Route", "value": "canary" }], "add": [{ "name": "x-tag", "value": "a" }, { "name": "x-tag", "value": "b" }], "remove": ["X-Internal"] },
              "responseHeaders": { "remove": ["server"] } }
            """);
        var rq = action.RequestHeaders;
        Assert.False(rq.IsEmpty);
        Assert.True(rq.IsRemoved("x-internal"u8));
        Assert.True(rq.IsRemoved("X-ROUTE"u8)); // set replaces what the client sent
        Assert.False(rq.IsRemoved("x-tag"u8)); // add keeps what the client sent
        Assert.False(rq.IsRemoved("x-internals"u8));
        Assert.Equal("X-Route", Encoding.ASCII.GetString(rq.Sets[0].Name));
        Assert.Equal("canary", Encoding.ASCII.GetString(rq.Sets[0].Value));
        Assert.Equal(2, rq.Adds.Length);
        Assert.Equal("b", Encoding.ASCII.GetString(rq.Adds[1].Value));
        Assert.True(action.ResponseHeaders.IsRemoved("Server"u8));
        Assert.Equal(0, action.ResponseHeaders.Sets.Length);
    }

    [Fact]
    public void HeaderMutations_NoneConfigured_IsEmpty()
    {
        var action = Action("""{ "service": "web" }""");
        Assert.True(action.RequestHeaders.IsEmpty);
        Assert.True(action.ResponseHeaders.IsEmpty);
        Assert.False(action.RequestHeaders.IsRemoved("x"u8));
        Assert.True(HeaderMutations.None.IsEmpty);
    }

    private sealed class ThrowingRandomSource : Proxy.Core.Balancing.IRandomSource
    {
        public int Next(int maxExclusive) => throw new InvalidOperationException("must not be called");
    }
}

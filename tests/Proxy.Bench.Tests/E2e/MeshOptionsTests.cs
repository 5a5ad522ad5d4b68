using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e;

/// <summary>The options of the two-hop mesh scenario (<c>--scenario mesh</c>).</summary>
public sealed class MeshOptionsTests
{
    [Fact]
    public void Parse_MeshScenario_DefaultsToC32AndC1AndEveryPairAndH2BetweenHaproxyHops()
    {
        var options = E2eOptions.Parse(["--scenario", "mesh"]);

        Assert.Equal("mesh", options.Scenario);
        Assert.Equal(["c32", "c1"], options.Variants);
        Assert.True(options.Peers.SetEquals(["direct", "haproxy-plain", "haproxy-tls", "sidecar-plain", "sidecar-mtls"]));
        Assert.Equal("h2", options.HaproxyAlpn);
        Assert.Equal(SidecarFlavor.Aot, MeshScenario.Flavor(options));
    }

    [Fact]
    public void Parse_MeshScenarioGivenAfterItsLists_ChecksListsAgainstMeshNames()
    {
        var options = E2eOptions.Parse(["--variants", "c1", "--peers", "direct,sidecar-mtls", "--haproxy-alpn", "http/1.1", "--jit", "--scenario", "mesh"]);

        Assert.Equal(["c1"], options.Variants);
        Assert.True(options.Peers.SetEquals(["direct", "sidecar-mtls"]));
        Assert.Equal("http/1.1", options.HaproxyAlpn);
        Assert.Equal(SidecarFlavor.Jit, MeshScenario.Flavor(options));
    }

    [Fact]
    public void Parse_MeshScenarioWithHttpNames_RejectsThemNamingTheScenario()
    {
        var error = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--scenario", "mesh", "--variants", "close", "--peers", "haproxy", "--haproxy-alpn", "h3"]));

        Assert.Contains("--variants: unknown 'close' for scenario mesh (known: c32,c1)", error.Message, StringComparison.Ordinal);
        Assert.Contains("--peers: unknown 'haproxy' for scenario mesh", error.Message, StringComparison.Ordinal);
        Assert.Contains("--haproxy-alpn: 'h3' is not h2 or http/1.1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_MentionsTheMeshScenarioAndItsPeers()
    {
        Assert.Contains("mesh (HTTP/1.1, wrk", E2eOptions.Usage, StringComparison.Ordinal);
        Assert.Contains("sidecar-mtls", E2eOptions.Usage, StringComparison.Ordinal);
    }
}

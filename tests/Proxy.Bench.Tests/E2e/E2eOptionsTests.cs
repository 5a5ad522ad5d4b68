using Proxy.Bench.E2e;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e;

public sealed class E2eOptionsTests
{
    [Fact]
    public void Parse_NoArguments_DefaultsToFiveRoundsAllPeersBothBuilds()
    {
        var options = E2eOptions.Parse([]);

        Assert.Equal("l4", options.Scenario);
        Assert.Equal(5, options.Repeat);
        Assert.Equal(5, options.StartupRepeat);
        Assert.Equal(TimeSpan.FromSeconds(3), options.Duration);
        Assert.True(options.Jit);
        Assert.True(options.Aot);
        Assert.Equal(E2eOptions.AllPeers.Count, options.Peers.Count);
        Assert.Equal(["forward", "reverse", "parallel"], options.Variants);
        Assert.True(options.AllowInstall);
    }

    [Fact]
    public void Parse_ValuesInlineAndSeparate_AreBothRead()
    {
        var options = E2eOptions.Parse(["--repeat=2", "--duration", "7", "--aot", "--peers", "direct, haproxy", "--sidecar-arg=--splice", "--sidecar-arg", "on", "--startup-repeat", "0"]);

        Assert.Equal(2, options.Repeat);
        Assert.Equal(TimeSpan.FromSeconds(7), options.Duration);
        Assert.False(options.Jit);
        Assert.True(options.Aot);
        Assert.Equal(0, options.StartupRepeat);
        Assert.True(options.Peers.SetEquals(["direct", "haproxy"]));
        Assert.Equal(["--splice", "on"], options.SidecarArguments);
    }

    [Fact]
    public void Parse_SeveralBadOptions_ReportsEveryOneAtOnce()
    {
        var error = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--repeat", "zero", "--peers", "envoy", "--frobnicate", "--duration"]));

        Assert.Contains("--repeat: 'zero'", error.Message, StringComparison.Ordinal);
        Assert.Contains("unknown 'envoy'", error.Message, StringComparison.Ordinal);
        Assert.Contains("unknown option '--frobnicate'", error.Message, StringComparison.Ordinal);
        Assert.Contains("--duration needs a value", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_HttpScenario_DefaultsToItsVariantsAndPeers()
    {
        var options = E2eOptions.Parse(["--scenario", "http"]);

        Assert.Equal(["c32", "c1", "close", "c32cpu", "closecpu"], options.Variants);
        Assert.Equal(0.5, options.CpuLimit);
        Assert.True(options.Peers.SetEquals(["direct", "haproxy", "nginx", "yarp", "sidecar-jit", "sidecar-aot"]));
        Assert.Equal("http", options.SidecarProtocol);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Warmup);
    }

    [Theory]
    [InlineData("0.25", 0.25)]
    [InlineData("2", 2.0)]
    public void Parse_CpuLimit_TakesCpus(string value, double cores)
    {
        var options = E2eOptions.Parse(["--scenario", "http", "--cpu-limit", value, "--variants", "c32cpu"]);

        Assert.Equal(cores, options.CpuLimit);
        Assert.Equal(["c32cpu"], options.Variants);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("half")]
    [InlineData("100")]
    public void Parse_CpuLimitOutOfRange_IsNamed(string value)
    {
        var error = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--scenario", "http", "--cpu-limit", value]));

        Assert.Contains($"--cpu-limit: '{value}' is not a number of CPUs from 0.01 to 64", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_HttpScenarioGivenAfterItsLists_ChecksListsAgainstHttpNames()
    {
        var options = E2eOptions.Parse(["--variants", "c1,close", "--peers", "nginx,yarp", "--duration", "2s", "--warmup", "0", "--sidecar-protocol", "none", "--scenario", "http"]);

        Assert.Equal(["c1", "close"], options.Variants);
        Assert.True(options.Peers.SetEquals(["nginx", "yarp"]));
        Assert.Equal(TimeSpan.FromSeconds(2), options.Duration);
        Assert.Equal(TimeSpan.Zero, options.Warmup);
        Assert.Null(options.SidecarProtocol);
    }

    [Fact]
    public void Parse_NamesOfAnotherScenario_AreRejectedNamingTheScenario()
    {
        var http = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--scenario", "http", "--variants", "forward", "--peers", "sidecar-splice-off"]));
        var l4 = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--variants", "c32", "--peers", "yarp"]));

        Assert.Contains("--variants: unknown 'forward' for scenario http", http.Message, StringComparison.Ordinal);
        Assert.Contains("--peers: unknown 'sidecar-splice-off' for scenario http", http.Message, StringComparison.Ordinal);
        Assert.Contains("--variants: unknown 'c32' for scenario l4", l4.Message, StringComparison.Ordinal);
        Assert.Contains("--peers: unknown 'yarp' for scenario l4", l4.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--scenario", "h3", "--scenario: unknown 'h3'")]
    [InlineData("--duration", "0s", "--duration: '0s' is not a whole number of seconds >= 1")]
    [InlineData("--warmup", "-1", "--warmup: '-1' is not a whole number of seconds >= 0")]
    [InlineData("--sidecar-protocol", "", "--sidecar-protocol: empty value")]
    [InlineData("--upstream", "h3", "--upstream: 'h3' is not h1 or h2")]
    public void Parse_BadHttpOptionValue_IsReported(string option, string value, string expected)
    {
        var error = Assert.Throws<E2eException>(() => E2eOptions.Parse([option, value]));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_Upstream_H2SetsHttp2UpstreamDefaultH1()
    {
        Assert.True(E2eOptions.Parse(["--scenario", "h2", "--upstream", "h2"]).Http2Upstream);
        Assert.False(E2eOptions.Parse(["--scenario", "h2", "--upstream", "h1"]).Http2Upstream);
        Assert.False(E2eOptions.Parse(["--scenario", "h2"]).Http2Upstream);
    }

    [Fact]
    public void Parse_H2Scenario_DefaultsToItsVariantsAndTheHttpPeers()
    {
        var options = E2eOptions.Parse(["--scenario", "h2"]);

        Assert.Equal("h2", options.Scenario);
        Assert.Equal(["c16m10", "c1m1"], options.Variants);
        Assert.True(options.Peers.SetEquals(["direct", "haproxy", "nginx", "yarp", "sidecar-jit", "sidecar-aot"]));
        Assert.Equal("http", options.SidecarProtocol);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Warmup);
        Assert.Equal(5, options.Repeat);
    }

    [Fact]
    public void Parse_H2ScenarioGivenAfterItsLists_ChecksListsAgainstH2Names()
    {
        var options = E2eOptions.Parse(["--variants", "c1m1", "--peers", "haproxy,sidecar-aot", "--repeat", "1", "--duration", "2", "--warmup=1", "--aot", "--scenario=h2"]);

        Assert.Equal(["c1m1"], options.Variants);
        Assert.True(options.Peers.SetEquals(["haproxy", "sidecar-aot"]));
        Assert.Equal(1, options.Repeat);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Duration);
        Assert.Equal(TimeSpan.FromSeconds(1), options.Warmup);
        Assert.False(options.Jit);
    }

    [Fact]
    public void Parse_H2ScenarioWithHttpOrL4Names_RejectsThemNamingTheScenario()
    {
        var error = Assert.Throws<E2eException>(() => E2eOptions.Parse(["--scenario", "h2", "--variants", "c32,c16m10", "--peers", "sidecar-splice-off"]));

        Assert.Contains("--variants: unknown 'c32' for scenario h2 (known: c16m10,c1m1)", error.Message, StringComparison.Ordinal);
        Assert.Contains("--peers: unknown 'sidecar-splice-off' for scenario h2", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("'c16m10'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_MentionsTheH2Scenario()
    {
        Assert.Contains("h2 (h2c with", E2eOptions.Usage, StringComparison.Ordinal);
        Assert.Contains("c16m10,c1m1", E2eOptions.Usage, StringComparison.Ordinal);
    }
}

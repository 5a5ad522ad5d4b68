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
}

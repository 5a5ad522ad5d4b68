using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class IptablesBackendResolverTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static Task<(IptablesBackend? Backend, string? Error, string? Reason)> ResolveAsync(FakeCommandRunner runner, IptablesMode mode = IptablesMode.Auto) =>
        IptablesBackendResolver.ResolveAsync(mode, ipv6: true, runner, CancellationToken.None).WaitAsync(Timeout);

    /// <summary>Answers *-save (no -t) with the given outputs per backend, and "iptables --version" with <paramref name="plain"/>.</summary>
    private static FakeCommandRunner Runner(string nftSave, string legacySave, string? plain = null)
    {
        var runner = FakeCommandRunner.WithBothBackends();
        if (plain is not null)
        {
            runner.Installed.Add("iptables");
        }

        runner.Respond = (program, args, _) => program switch
        {
            "iptables" => new CommandResult(0, plain ?? "", ""),
            "iptables-nft-save" or "ip6tables-nft-save" => new CommandResult(0, nftSave, ""),
            "iptables-legacy-save" or "ip6tables-legacy-save" => new CommandResult(0, legacySave, ""),
            _ => new CommandResult(1, "", "unexpected"),
        };
        return runner;
    }

    private const string Ours = "*nat\n:OUTPUT ACCEPT [0:0]\n:PROXY_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j PROXY_OUTPUT\nCOMMIT\n";
    private const string ThreeRules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\n-A INPUT -p tcp -j ACCEPT\nCOMMIT\n";
    private const string OneRule = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";

    [Fact]
    public async Task ResolveAsync_ExplicitNft_ReturnsNftBinariesWithoutReading()
    {
        var runner = FakeCommandRunner.WithBothBackends();

        var (backend, error, _) = await ResolveAsync(runner, IptablesMode.Nft);

        Assert.Null(error);
        Assert.Equal(new IptablesBackend(IptablesMode.Nft, "/usr/sbin/iptables-nft-save", "/usr/sbin/iptables-nft-restore", "/usr/sbin/ip6tables-nft-save", "/usr/sbin/ip6tables-nft-restore"), backend);
        Assert.Empty(runner.Calls);
    }

    [Fact]
    public async Task ResolveAsync_LegacyOnlyUnderPlainNames_UsesPlainBinariesAfterCheckingVersion()
    {
        var runner = new FakeCommandRunner();
        foreach (var name in new[] { "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore" })
        {
            runner.Installed.Add(name);
        }

        runner.Respond = (program, args, _) => new CommandResult(0, program == "iptables-save" && args is ["--version"] ? "iptables-save v1.8.7 (legacy)\n" : "", "");

        var (backend, error, _) = await ResolveAsync(runner, IptablesMode.Legacy);

        Assert.Null(error);
        Assert.Equal("/usr/sbin/iptables-restore", backend!.Restore4);
        Assert.Equal(IptablesMode.Legacy, backend.Mode);
    }

    [Fact]
    public async Task ResolveAsync_AutoOurChainsInLegacy_PicksLegacy()
    {
        var (backend, _, reason) = await ResolveAsync(Runner(nftSave: ThreeRules, legacySave: Ours));

        Assert.Equal(IptablesMode.Legacy, backend!.Mode);
        Assert.Equal("our chains are in the legacy backend", reason);
    }

    [Fact]
    public async Task ResolveAsync_AutoMoreRulesInNft_PicksNft()
    {
        var (backend, _, reason) = await ResolveAsync(Runner(nftSave: ThreeRules, legacySave: OneRule));

        Assert.Equal(IptablesMode.Nft, backend!.Mode);
        Assert.Equal("the nft backend holds more rules (6 vs 2)", reason);
    }

    [Fact]
    public async Task ResolveAsync_AutoOnlyLegacyHasRules_PicksLegacy()
    {
        var (backend, _, _) = await ResolveAsync(Runner(nftSave: "", legacySave: OneRule, plain: "iptables v1.8.9 (nf_tables)\n"));

        Assert.Equal(IptablesMode.Legacy, backend!.Mode);
    }

    [Fact]
    public async Task ResolveAsync_AutoBothEmptyPlainIsLegacy_PicksLegacy()
    {
        var (backend, _, reason) = await ResolveAsync(Runner(nftSave: "", legacySave: "", plain: "iptables v1.8.9 (legacy)\n"));

        Assert.Equal(IptablesMode.Legacy, backend!.Mode);
        Assert.Equal("no backend holds rules and plain iptables is iptables-legacy", reason);
    }

    [Fact]
    public async Task ResolveAsync_AutoBothEmptyNoPlainIptables_PicksNft()
    {
        var (backend, _, reason) = await ResolveAsync(Runner(nftSave: "", legacySave: ""));

        Assert.Equal(IptablesMode.Nft, backend!.Mode);
        Assert.Equal("no backend holds rules; nft is the default", reason);
    }

    [Fact]
    public async Task ResolveAsync_AutoNothingInstalled_ErrorNamesPackage()
    {
        var (backend, error, _) = await ResolveAsync(new FakeCommandRunner());

        Assert.Null(backend);
        Assert.Equal(
            "--mode auto: no iptables backend is installed (iptables-nft-save, iptables-nft-restore, ip6tables-nft-save, ip6tables-nft-restore and " +
            "iptables-legacy-save, iptables-legacy-restore, ip6tables-legacy-save, ip6tables-legacy-restore not found; Debian: apt-get install iptables).",
            error);
    }
}

using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class IptablesConfiguratorTests
{
    private const string EmptyNat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static async Task<(int ExitCode, string Output, string Error)> RunAsync(FakeCommandRunner runner, IptablesOptions options)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var exitCode = await new IptablesConfigurator(runner, output, error).RunAsync(options, CancellationToken.None).WaitAsync(Timeout);
        return (exitCode, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task RunAsync_FreshTables_ReadsThenRestoresEachFamilyWithNoflush()
    {
        var runner = FakeCommandRunner.WithBothBackends();
        runner.Respond = (program, args, _) => program.EndsWith("-save", StringComparison.Ordinal) ? new CommandResult(0, EmptyNat, "") : new CommandResult(0, "", "");

        var (exitCode, output, error) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Nft });

        Assert.Equal(0, exitCode);
        Assert.Equal("", error);
        Assert.Equal(
            [
                "iptables-nft-save -t nat",
                "iptables-nft-restore --noflush --wait=10",
                "ip6tables-nft-save -t nat",
                "ip6tables-nft-restore --noflush --wait=10",
            ],
            runner.CommandLines);
        Assert.Equal(IptablesRules.BuildApply(new IptablesOptions(), IpFamily.V4, NatTableState.Empty), runner.Calls[1].Input);
        Assert.Equal(IptablesRules.BuildApply(new IptablesOptions(), IpFamily.V6, NatTableState.Empty), runner.Calls[3].Input);
        Assert.Equal("IPv4: applied capture rules to table nat (iptables-nft-restore).\nIPv6: applied capture rules to table nat (ip6tables-nft-restore).\n", output);
    }

    [Fact]
    public async Task RunAsync_JumpsAlreadyPresent_RestoreDoesNotAddThemAgain()
    {
        var runner = FakeCommandRunner.WithBothBackends();
        const string applied = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:PROXY_INBOUND - [0:0]\n:PROXY_OUTPUT - [0:0]\n" +
            "-A PREROUTING -p tcp -j PROXY_INBOUND\n-A OUTPUT -p tcp -j PROXY_OUTPUT\n-A PROXY_OUTPUT -j PROXY_REDIRECT\nCOMMIT\n";
        runner.Respond = (program, _, _) => new CommandResult(0, program.EndsWith("-save", StringComparison.Ordinal) ? applied : "", "");

        var (exitCode, _, _) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Legacy, Ipv6 = false });

        Assert.Equal(0, exitCode);
        Assert.Equal(["iptables-legacy-save -t nat", "iptables-legacy-restore --noflush --wait=10"], runner.CommandLines);
        var input = runner.Calls[1].Input!;
        Assert.DoesNotContain("-A PREROUTING", input, StringComparison.Ordinal);
        Assert.DoesNotContain("-A OUTPUT", input, StringComparison.Ordinal);
        Assert.EndsWith("-A PROXY_OUTPUT -j PROXY_REDIRECT\nCOMMIT\n", input, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsync_Remove_DeletesTheJumpsFoundAndOurChains()
    {
        var runner = FakeCommandRunner.WithBothBackends();
        const string applied = "*nat\n:OUTPUT ACCEPT [0:0]\n:PROXY_OUTPUT - [0:0]\n-A OUTPUT -p tcp -m comment --comment x -j PROXY_OUTPUT\nCOMMIT\n";
        runner.Respond = (program, _, _) => new CommandResult(0, program.StartsWith("iptables", StringComparison.Ordinal) && program.EndsWith("-save", StringComparison.Ordinal) ? applied : program.EndsWith("-save", StringComparison.Ordinal) ? EmptyNat : "", "");

        var (exitCode, output, _) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Nft, Remove = true });

        Assert.Equal(0, exitCode);
        Assert.Equal(["iptables-nft-save -t nat", "iptables-nft-restore --noflush --wait=10", "ip6tables-nft-save -t nat"], runner.CommandLines);
        Assert.Contains("-D OUTPUT -p tcp -m comment --comment x -j PROXY_OUTPUT\n-X PROXY_INBOUND\n", runner.Calls[1].Input, StringComparison.Ordinal);
        Assert.Equal("IPv4: removed our chains and jumps from table nat (iptables-nft-restore).\nIPv6: no rules of ours in table nat; nothing to remove.\n", output);
    }

    [Fact]
    public async Task RunAsync_RestoreFails_ExitsOneWithSentenceAndInput()
    {
        var runner = FakeCommandRunner.WithBothBackends();
        runner.Respond = (program, _, _) => program switch
        {
            "ip6tables-nft-restore" => new CommandResult(2, "", "ip6tables-restore v1.8.9 (nf_tables): line 9: RULE_APPEND failed (No such file or directory): rule in chain PROXY_OUTPUT\n"),
            _ => new CommandResult(0, program.EndsWith("-save", StringComparison.Ordinal) ? EmptyNat : "", ""),
        };

        var (exitCode, _, error) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Nft });

        Assert.Equal(1, exitCode);
        Assert.StartsWith(
            "ip6tables-nft-restore --noflush rejected the IPv6 rules (exit 2): ip6tables-restore v1.8.9 (nf_tables): line 9: RULE_APPEND failed (No such file or directory): rule in chain PROXY_OUTPUT. " +
            "Nothing was changed for IPv6. IPv4 was already applied; run again after fixing the problem.\nThe input was:\n*nat\n",
            error,
            StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsync_SaveFails_ExitsOneWithoutRestoring()
    {
        var runner = FakeCommandRunner.WithBothBackends();
        runner.Respond = (_, _, _) => new CommandResult(1, "", "iptables-legacy-save: Permission denied (you must be root)\n");

        var (exitCode, _, error) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Legacy });

        Assert.Equal(1, exitCode);
        Assert.Equal("Reading table nat failed: iptables-legacy-save -t nat exited with 1: iptables-legacy-save: Permission denied (you must be root).\n", error);
        Assert.Single(runner.Calls);
    }

    [Fact]
    public async Task RunAsync_BinaryMissing_ExitsOneNamingItAndThePackage()
    {
        var runner = new FakeCommandRunner();
        runner.Installed.Add("iptables-legacy-save");
        runner.Installed.Add("iptables-legacy-restore");

        var (exitCode, _, error) = await RunAsync(runner, new IptablesOptions { Mode = IptablesMode.Legacy });

        Assert.Equal(1, exitCode);
        Assert.Equal("--mode legacy: ip6tables-legacy-save, ip6tables-legacy-restore not found in PATH or the sbin folders (Debian: apt-get install iptables).\n", error);
        Assert.Empty(runner.Calls);
    }

    [Fact]
    public async Task RunAsync_DryRun_PrintsBothFamiliesAndRunsNothing()
    {
        var runner = new FakeCommandRunner();

        var (exitCode, output, _) = await RunAsync(runner, new IptablesOptions { DryRun = true });

        Assert.Equal(0, exitCode);
        Assert.Empty(runner.Calls);
        Assert.Equal(
            "# IPv4: input for iptables-restore --noflush\n" + IptablesRules.BuildApply(new IptablesOptions(), IpFamily.V4, NatTableState.Empty) +
            "# IPv6: input for ip6tables-restore --noflush\n" + IptablesRules.BuildApply(new IptablesOptions(), IpFamily.V6, NatTableState.Empty),
            output);
    }
}

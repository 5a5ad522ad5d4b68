using System.Text;

namespace Proxy.Sidecar.Iptables;

/// <summary>The save/restore binaries of one iptables backend, resolved to absolute paths.</summary>
public sealed record IptablesBackend(IptablesMode Mode, string Save4, string Restore4, string? Save6, string? Restore6)
{
    public string Save(IpFamily family) => family == IpFamily.V4 ? Save4 : Save6 ?? throw new InvalidOperationException("no ip6tables-save");

    public string Restore(IpFamily family) => family == IpFamily.V4 ? Restore4 : Restore6 ?? throw new InvalidOperationException("no ip6tables-restore");

    public string Name => Mode == IptablesMode.Nft ? "nft" : "legacy";
}

/// <summary>Finds the binaries of a backend and, in auto mode, decides which backend to use.</summary>
public static class IptablesBackendResolver
{
    /// <summary>
    /// Returns the backend for <paramref name="mode"/>, or null with a sentence saying what is missing.
    /// <paramref name="reason"/> says why auto mode chose what it chose.
    /// </summary>
    /// <remarks>
    /// Auto detection. Rules in the legacy and the nft backends both run, in an order nobody controls, so
    /// the sidecar must write to the backend the rest of the node (kube-proxy, the CNI) already uses:
    /// <list type="number">
    /// <item>if exactly one backend holds our chains (an earlier run), use it, so re-apply and --remove find them;</item>
    /// <item>else if only one backend holds any rule, or one holds more rules than the other, use it;</item>
    /// <item>else (both empty or a tie) use what plain <c>iptables</c> is (its --version says nf_tables or legacy);</item>
    /// <item>else nft, the default of current distributions, if installed; else legacy.</item>
    /// </list>
    /// Reading uses <c>*-save</c> without <c>-t</c>, which lists only tables that exist and creates none.
    /// </remarks>
    public static async Task<(IptablesBackend? Backend, string? Error, string? Reason)> ResolveAsync(
        IptablesMode mode, bool ipv6, ICommandRunner runner, CancellationToken cancellationToken)
    {
        if (mode != IptablesMode.Auto)
        {
            var (backend, missing) = await FindAsync(mode, ipv6, runner, cancellationToken);
            return backend is null
                ? (null, $"--mode {(mode == IptablesMode.Nft ? "nft" : "legacy")}: {missing} not found in PATH or the sbin folders (Debian: apt-get install iptables).", null)
                : (backend, null, null);
        }

        var (nft, nftMissing) = await FindAsync(IptablesMode.Nft, ipv6, runner, cancellationToken);
        var (legacy, legacyMissing) = await FindAsync(IptablesMode.Legacy, ipv6, runner, cancellationToken);
        if (nft is null && legacy is null)
        {
            return (null, $"--mode auto: no iptables backend is installed ({nftMissing} and {legacyMissing} not found; Debian: apt-get install iptables).", null);
        }

        if (nft is null)
        {
            return (legacy, null, "only iptables-legacy is installed");
        }

        if (legacy is null)
        {
            return (nft, null, "only iptables-nft is installed");
        }

        var nftCensus = await CensusAsync(nft, ipv6, runner, cancellationToken);
        var legacyCensus = await CensusAsync(legacy, ipv6, runner, cancellationToken);
        if (nftCensus.HasOurs != legacyCensus.HasOurs)
        {
            return nftCensus.HasOurs ? (nft, null, "our chains are in the nft backend") : (legacy, null, "our chains are in the legacy backend");
        }

        if (nftCensus.Rules != legacyCensus.Rules)
        {
            return nftCensus.Rules > legacyCensus.Rules
                ? (nft, null, $"the nft backend holds more rules ({nftCensus.Rules} vs {legacyCensus.Rules})")
                : (legacy, null, $"the legacy backend holds more rules ({legacyCensus.Rules} vs {nftCensus.Rules})");
        }

        var plain = await PlainIptablesModeAsync(runner, cancellationToken);
        if (plain == IptablesMode.Legacy)
        {
            return (legacy, null, "no backend holds rules and plain iptables is iptables-legacy");
        }

        return plain == IptablesMode.Nft
            ? (nft, null, "no backend holds rules and plain iptables is iptables-nft")
            : (nft, null, "no backend holds rules; nft is the default");
    }

    private static async Task<(IptablesBackend? Backend, string Missing)> FindAsync(IptablesMode mode, bool ipv6, ICommandRunner runner, CancellationToken cancellationToken)
    {
        var variant = mode == IptablesMode.Nft ? "nft" : "legacy";
        var names = ipv6
            ? new[] { $"iptables-{variant}-save", $"iptables-{variant}-restore", $"ip6tables-{variant}-save", $"ip6tables-{variant}-restore" }
            : new[] { $"iptables-{variant}-save", $"iptables-{variant}-restore" };
        var paths = Locate(names, runner, out var missing);
        if (paths is null)
        {
            // Some distributions ship one backend under the plain names only.
            var plainNames = ipv6
                ? new[] { "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore" }
                : new[] { "iptables-save", "iptables-restore" };
            var plainPaths = Locate(plainNames, runner, out _);
            if (plainPaths is not null && await VersionModeAsync(plainPaths[0], runner, cancellationToken) == mode)
            {
                paths = plainPaths;
            }
        }

        if (paths is null)
        {
            return (null, missing);
        }

        return (new IptablesBackend(mode, paths[0], paths[1], ipv6 ? paths[2] : null, ipv6 ? paths[3] : null), "");
    }

    private static string[]? Locate(string[] names, ICommandRunner runner, out string missing)
    {
        var paths = new string[names.Length];
        var absent = new StringBuilder();
        for (var i = 0; i < names.Length; i++)
        {
            var path = runner.Locate(names[i]);
            if (path is null)
            {
                absent.Append(absent.Length == 0 ? "" : ", ").Append(names[i]);
            }
            else
            {
                paths[i] = path;
            }
        }

        missing = absent.ToString();
        return absent.Length == 0 ? paths : null;
    }

    private static async Task<IptablesMode?> PlainIptablesModeAsync(ICommandRunner runner, CancellationToken cancellationToken)
    {
        var path = runner.Locate("iptables");
        return path is null ? null : await VersionModeAsync(path, runner, cancellationToken);
    }

    private static async Task<IptablesMode?> VersionModeAsync(string path, ICommandRunner runner, CancellationToken cancellationToken)
    {
        var result = await runner.RunAsync(path, ["--version"], null, cancellationToken);
        if (result.ExitCode != 0)
        {
            return null;
        }

        if (result.StandardOutput.Contains("nf_tables", StringComparison.Ordinal))
        {
            return IptablesMode.Nft;
        }

        return result.StandardOutput.Contains("legacy", StringComparison.Ordinal) ? IptablesMode.Legacy : null;
    }

    private static async Task<(bool HasOurs, int Rules)> CensusAsync(IptablesBackend backend, bool ipv6, ICommandRunner runner, CancellationToken cancellationToken)
    {
        var hasOurs = false;
        var rules = 0;
        foreach (var family in ipv6 ? new[] { IpFamily.V4, IpFamily.V6 } : [IpFamily.V4])
        {
            var result = await runner.RunAsync(backend.Save(family), [], null, cancellationToken);
            if (result.ExitCode != 0)
            {
                continue;
            }

            foreach (var line in result.StandardOutput.Split('\n'))
            {
                if (line.StartsWith("-A ", StringComparison.Ordinal))
                {
                    rules++;
                }
                else if (line.StartsWith(':' + IptablesRules.OutputChain + ' ', StringComparison.Ordinal) || line.StartsWith(':' + IptablesRules.InboundChain + ' ', StringComparison.Ordinal))
                {
                    hasOurs = true;
                }
            }
        }

        return (hasOurs, rules);
    }
}

namespace Proxy.Sidecar.Iptables;

/// <summary>
/// Applies, removes or prints the capture rules:
/// <code>
/// 1. resolve the backend (nft / legacy; auto detects)           dry-run: skipped, nothing is read
/// 2. per family (IPv4, then IPv6 unless --ipv6 false):
///    a. read table nat with *-save -t nat                        (our chains, jumps into them)
///    b. build the restore input (IptablesRules)
///    c. load it atomically with *-restore --noflush              (one transaction per family)
/// </code>
/// Returns the process exit code: 0 done, 1 runtime failure (missing binary, failing save/restore).
/// </summary>
public sealed class IptablesConfigurator
{
    /// <summary>Exit code for a runtime failure.</summary>
    public const int RuntimeFailure = 1;

    private static readonly string[] RestoreArguments = ["--noflush", "--wait=10"];
    private static readonly string[] SaveArguments = ["-t", "nat"];

    private readonly ICommandRunner _runner;
    private readonly TextWriter _output;
    private readonly TextWriter _error;

    public IptablesConfigurator(ICommandRunner runner, TextWriter output, TextWriter error)
    {
        _runner = runner;
        _output = output;
        _error = error;
    }

    public async Task<int> RunAsync(IptablesOptions options, CancellationToken cancellationToken)
    {
        IpFamily[] families = options.Ipv6 ? [IpFamily.V4, IpFamily.V6] : [IpFamily.V4];
        if (options.DryRun)
        {
            WriteDryRun(options, families);
            return 0;
        }

        var (backend, error, reason) = await IptablesBackendResolver.ResolveAsync(options.Mode, options.Ipv6, _runner, cancellationToken);
        if (backend is null)
        {
            await _error.WriteLineAsync(error);
            return RuntimeFailure;
        }

        if (reason is not null)
        {
            await _output.WriteLineAsync($"Using iptables-{backend.Name}: {reason}.");
        }

        var done = new List<IpFamily>(2);
        foreach (var family in families)
        {
            var save = await _runner.RunAsync(backend.Save(family), SaveArguments, null, cancellationToken);
            if (save.ExitCode != 0)
            {
                await _error.WriteLineAsync($"Reading table nat failed: {Path.GetFileName(backend.Save(family))} -t nat exited with {save.ExitCode}: {FirstLine(save.StandardError)}{Undone(done, options)}");
                return RuntimeFailure;
            }

            var state = NatTableState.Parse(save.StandardOutput);
            var input = options.Remove ? IptablesRules.BuildRemove(state) : IptablesRules.BuildApply(options, family, state);
            if (input is null)
            {
                await _output.WriteLineAsync($"{Label(family)}: no rules of ours in table nat; nothing to remove.");
                done.Add(family);
                continue;
            }

            var restore = await _runner.RunAsync(backend.Restore(family), RestoreArguments, input, cancellationToken);
            if (restore.ExitCode != 0)
            {
                await _error.WriteLineAsync(
                    $"{Path.GetFileName(backend.Restore(family))} --noflush rejected the {Label(family)} rules (exit {restore.ExitCode}): {FirstLine(restore.StandardError)} Nothing was changed for {Label(family)}.{Undone(done, options)}");
                await _error.WriteLineAsync("The input was:");
                await _error.WriteAsync(input);
                return RuntimeFailure;
            }

            await _output.WriteLineAsync(options.Remove
                ? $"{Label(family)}: removed our chains and jumps from table nat ({Path.GetFileName(backend.Restore(family))})."
                : $"{Label(family)}: applied capture rules to table nat ({Path.GetFileName(backend.Restore(family))}).");
            done.Add(family);
        }

        return 0;
    }

    /// <summary>
    /// Prints the exact restore input per family. Nothing is read (no root needed), so the jumps from the
    /// built-in chains are shown as for a table that has none of ours (apply) or all of them (remove).
    /// </summary>
    private void WriteDryRun(IptablesOptions options, IpFamily[] families)
    {
        foreach (var family in families)
        {
            var command = family == IpFamily.V4 ? "iptables-restore" : "ip6tables-restore";
            _output.Write($"# {Label(family)}: input for {command} --noflush\n");
            if (options.Remove)
            {
                var all = new NatTableState(IptablesRules.Chains, [IptablesRules.PreroutingJump, IptablesRules.OutputJump]);
                _output.Write(IptablesRules.BuildRemove(all));
            }
            else
            {
                _output.Write(IptablesRules.BuildApply(options, family, NatTableState.Empty));
            }
        }
    }

    private static string Undone(List<IpFamily> done, IptablesOptions options) =>
        done.Count == 0
            ? ""
            : $" {Label(done[0])} was already {(options.Remove ? "cleaned" : "applied")}; run again after fixing the problem.";

    private static string Label(IpFamily family) => family == IpFamily.V4 ? "IPv4" : "IPv6";

    private static string FirstLine(string text)
    {
        var trimmed = text.Trim();
        var newline = trimmed.IndexOf('\n', StringComparison.Ordinal);
        var line = newline < 0 ? trimmed : trimmed[..newline].TrimEnd();
        return line.Length == 0 ? "(no message)." : line.EndsWith('.') ? line : line + ".";
    }
}

using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

/// <summary>
/// A scripted <see cref="ICommandRunner"/>: programs in <see cref="Installed"/> exist under /usr/sbin; each
/// call is recorded; answers come from <see cref="Respond"/> (default: exit 0, no output).
/// </summary>
internal sealed class FakeCommandRunner : ICommandRunner
{
    public HashSet<string> Installed { get; } = [];

    public List<(string Program, string[] Arguments, string? Input)> Calls { get; } = [];

    public Func<string, string[], string?, CommandResult> Respond { get; set; } = (_, _, _) => new CommandResult(0, "", "");

    public static FakeCommandRunner WithBothBackends()
    {
        var runner = new FakeCommandRunner();
        foreach (var variant in new[] { "nft", "legacy" })
        {
            foreach (var tool in new[] { "iptables", "ip6tables" })
            {
                runner.Installed.Add($"{tool}-{variant}-save");
                runner.Installed.Add($"{tool}-{variant}-restore");
            }
        }

        return runner;
    }

    public string? Locate(string program) => Installed.Contains(program) ? "/usr/sbin/" + program : null;

    public Task<CommandResult> RunAsync(string path, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
    {
        var program = Path.GetFileName(path);
        var args = arguments.ToArray();
        Calls.Add((program, args, standardInput));
        return Task.FromResult(Respond(program, args, standardInput));
    }

    /// <summary>The programs called, with their arguments, one string each.</summary>
    public IEnumerable<string> CommandLines => Calls.Select(c => string.Join(' ', [c.Program, .. c.Arguments]));
}

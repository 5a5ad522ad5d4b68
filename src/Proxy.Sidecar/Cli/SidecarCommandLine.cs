using System.CommandLine;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Cli;

/// <summary>
/// The command line: <c>sidecar [run]</c> runs the proxy; subcommands do one-off jobs. Every run flag
/// comes from <see cref="Setting.All"/>, so flags, config file keys, defaults and --help never disagree.
/// Any usage error (unknown flag, bad value, bad config file) is reported in full and exits 64.
/// </summary>
internal static class SidecarCommandLine
{
    public static async Task<int> InvokeAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var root = Build(stdout, stderr);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await stderr.WriteLineAsync($"error: {error.Message}");
            }

            await stderr.WriteLineAsync("Run 'sidecar --help' for usage.");
            return ExitCodes.Usage;
        }

        // On SIGINT/SIGTERM the action's token fires and the process gets this long to stop cleanly before
        // System.CommandLine ends it; without it the process would end at once with 130. The proxy itself (run) handles
        // the signals on its own (App/SidecarApp.cs): its drain may take up to --drain-timeout, then it exits 0.
        var runsProxy = parse.CommandResult.Command is RootCommand || parse.CommandResult.Command.Name == "run";
        return await parse.InvokeAsync(new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            ProcessTerminationTimeout = runsProxy ? null : TimeSpan.FromSeconds(10),
        });
    }

    internal static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand(
            "Proxy: a service-mesh sidecar. Captures the app's inbound and outbound TCP connections (iptables REDIRECT), " +
            "recovers each one's original destination and forwards it: to the endpoints of a known service, or through as it was.");
        var run = new Command("run", "Run the sidecar (the default when no command is given).");
        RunCommand.Configure(root, stdout, stderr);
        RunCommand.Configure(run, stdout, stderr);
        root.Subcommands.Add(run);
        root.Subcommands.Add(Iptables.IptablesCommand.Create());
        root.Subcommands.Add(Demo.DemoCommand.Create());
        root.Subcommands.Add(Ca.CaCommand.Create());
        root.Subcommands.Add(WaitCommand.Create());
        return root;
    }
}

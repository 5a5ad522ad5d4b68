using System.CommandLine;
using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Capture;

/// <summary>
/// Entry point used when the test assembly is run as a program (<c>dotnet Proxy.Sidecar.Tests.dll ...</c>)
/// inside a network namespace by <see cref="RealCaptureTests"/>. The test runner itself never calls it.
/// <list type="bullet">
/// <item><c>iptables ...</c>: the sidecar's <see cref="IptablesCommand"/> under a root command, as Program.cs hosts it;</item>
/// <item><c>capture-forwarder ...</c>: <see cref="CaptureForwarder"/>, a minimal redirect target built on the resolver.</item>
/// </list>
/// </summary>
internal static class TestProgram
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == CaptureForwarder.CommandName)
        {
            return CaptureForwarder.Run(args.AsSpan(1).ToArray());
        }

        return RunSidecarCommand(args, Console.Out, Console.Error);
    }

    /// <summary>Parses and runs a sidecar command line the way the sidecar does: bad flags exit 64.</summary>
    public static int RunSidecarCommand(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("sidecar (test host)") { IptablesCommand.Create() };
        var parseResult = root.Parse(args);
        if (parseResult.Errors.Count > 0)
        {
            foreach (var parseError in parseResult.Errors)
            {
                error.WriteLine($"sidecar: {parseError.Message}");
            }

            return IptablesCommand.UsageError;
        }

        return parseResult.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}

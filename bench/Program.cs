using BenchmarkDotNet.Running;
using Proxy.Bench.E2e;

namespace Proxy.Bench;

/// <summary>
/// Dispatcher. <c>dotnet run -c Release --project bench -- e2e [options]</c> runs the end-to-end comparison
/// against peer proxies; <c>yarp --listen ... --upstream ...</c> hosts the YARP peer of the HTTP scenario (started by
/// the e2e harness as a child process); <c>hpack</c> prints and saves the HPACK compression report; anything else goes to BenchmarkDotNet (e.g. <c>--filter *</c>).
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && string.Equals(args[0], "e2e", StringComparison.OrdinalIgnoreCase))
        {
            return E2eCommand.Run(args.AsSpan(1).ToArray());
        }

        if (args.Length > 0 && string.Equals(args[0], "hpack", StringComparison.OrdinalIgnoreCase))
        {
            return Hpack.HpackCompressionReport.Run(args.AsSpan(1).ToArray());
        }

        if (args.Length > 0 && string.Equals(args[0], "yarp", StringComparison.OrdinalIgnoreCase))
        {
            return E2e.YarpApp.YarpHost.Run(args.AsSpan(1).ToArray());
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

using Proxy.Sidecar.Cli;

namespace Proxy.Sidecar;

/// <summary>Loads the command line and runs the chosen command; all behaviour lives in App/ and the libraries.</summary>
internal static class Program
{
    public static Task<int> Main(string[] args) => SidecarCommandLine.InvokeAsync(args);
}

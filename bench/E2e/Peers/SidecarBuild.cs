using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

internal enum SidecarFlavor
{
    Jit,
    Aot,
}

/// <summary>
/// A published sidecar: its executable, the size of everything it needs from the publish folder (symbols excluded;
/// the JIT build also needs the shared .NET runtime, not counted), and how long publishing took.
/// </summary>
internal sealed record SidecarBuild(SidecarFlavor Flavor, string ExecutablePath, long PublishedBytes, TimeSpan PublishTime);

/// <summary>Publishes src/Proxy.Sidecar with <c>dotnet publish</c>, JIT (framework-dependent) or NativeAOT.</summary>
internal static class SidecarPublisher
{
    public static async Task<SidecarBuild> PublishAsync(string repositoryRoot, SidecarFlavor flavor, string outputDirectory, CancellationToken cancellationToken)
    {
        var project = Path.Combine(repositoryRoot, "src", "Proxy.Sidecar");
        List<string> arguments = ["publish", project, "-c", "Release", "-o", outputDirectory, "-nologo", "-v", "quiet"];
        if (flavor == SidecarFlavor.Aot)
        {
            arguments.AddRange(["-r", "linux-x64", "-p:PublishAot=true"]);
        }

        Console.WriteLine($"publishing sidecar ({flavor}): dotnet {string.Join(' ', arguments)}");
        var dotnet = ToolInstaller.Find("dotnet") ?? throw new E2eException("'dotnet' is not on PATH");
        var result = await ProcessRunner.RunAsync(dotnet, arguments, TimeSpan.FromMinutes(15), cancellationToken, workingDirectory: repositoryRoot);
        if (result.ExitCode != 0)
        {
            throw new E2eException($"dotnet publish of the sidecar ({flavor}) failed (exit {result.ExitCode}):\n{result.RecentOutput}");
        }

        var executable = Path.Combine(outputDirectory, "sidecar");
        if (!File.Exists(executable))
        {
            throw new E2eException($"dotnet publish ({flavor}) produced no {executable}");
        }

        long size = 0;
        foreach (var file in new DirectoryInfo(outputDirectory).EnumerateFiles("*", SearchOption.AllDirectories))
        {
            if (file.Extension is not (".pdb" or ".dbg"))
            {
                size += file.Length;
            }
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"published sidecar ({flavor}) in {result.Elapsed.TotalSeconds:F0} s, {size / 1048576.0:F1} MiB without symbols"));
        return new SidecarBuild(flavor, executable, size, result.Elapsed);
    }
}

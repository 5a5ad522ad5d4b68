namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>A command-line tool a scenario needs, and the Debian package that provides it.</summary>
internal sealed record ToolRequirement(string Binary, string DebianPackage);

/// <summary>
/// Finds tools on PATH (and /usr/sbin, /sbin, where Debian puts haproxy and nginx); installs the missing ones
/// with apt-get when running as root. Package post-install scripts are kept from starting system services
/// (nginx on port 80, say) with a temporary policy-rc.d.
/// </summary>
internal static class ToolInstaller
{
    private const string PolicyRcD = "/usr/sbin/policy-rc.d";

    private static readonly string[] ExtraDirectories = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

    /// <summary>Full path of <paramref name="binary"/>, or null when it is not installed.</summary>
    public static string? Find(string binary)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (var directory in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(ExtraDirectories))
        {
            var candidate = Path.Combine(directory, binary);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Full path of a tool that must be there (after <see cref="EnsureAsync"/>).</summary>
    public static string Require(string binary) =>
        Find(binary) ?? throw new E2eException($"'{binary}' is not installed");

    /// <summary>Installs every missing tool, or throws a message naming what is missing and why it cannot be installed.</summary>
    public static async Task EnsureAsync(IEnumerable<ToolRequirement> requirements, bool allowInstall, CancellationToken cancellationToken)
    {
        var missing = requirements.Where(r => Find(r.Binary) is null).DistinctBy(r => r.DebianPackage).ToList();
        if (missing.Count == 0)
        {
            return;
        }

        var packages = missing.Select(r => r.DebianPackage).ToList();
        var description = string.Join(", ", missing.Select(r => $"{r.Binary} (Debian package {r.DebianPackage})"));
        if (!allowInstall)
        {
            throw new E2eException($"missing tools: {description}; install them (apt-get install -y {string.Join(' ', packages)}) or drop --no-install");
        }

        if (!Environment.IsPrivilegedProcess || Find("apt-get") is not { } aptGet)
        {
            throw new E2eException($"missing tools: {description}; cannot install them (needs root and apt-get): run apt-get install -y {string.Join(' ', packages)}");
        }

        Console.WriteLine($"installing: {string.Join(' ', packages)} (apt-get install -y)");
        var environment = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        var createdPolicy = false;
        if (OperatingSystem.IsLinux() && !File.Exists(PolicyRcD))
        {
            // Exit code 101 = "action forbidden": invoke-rc.d then does not start the packages' services.
            await File.WriteAllTextAsync(PolicyRcD, "#!/bin/sh\nexit 101\n", cancellationToken);
            File.SetUnixFileMode(PolicyRcD, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            createdPolicy = true;
        }

        try
        {
            string[] install = ["install", "-y", "-q", "--no-install-recommends", .. packages];
            var result = await ProcessRunner.RunAsync(aptGet, install, TimeSpan.FromMinutes(10), cancellationToken, environment);
            if (result.ExitCode != 0)
            {
                Console.WriteLine("apt-get install failed; running apt-get update once and retrying");
                await ProcessRunner.RunAsync(aptGet, ["update", "-q"], TimeSpan.FromMinutes(5), cancellationToken, environment);
                result = await ProcessRunner.RunAsync(aptGet, install, TimeSpan.FromMinutes(10), cancellationToken, environment);
            }

            if (result.ExitCode != 0)
            {
                throw new E2eException($"apt-get install {string.Join(' ', packages)} failed (exit {result.ExitCode}):\n{result.RecentOutput}");
            }
        }
        finally
        {
            if (createdPolicy)
            {
                File.Delete(PolicyRcD);
            }
        }

        var stillMissing = missing.Where(r => Find(r.Binary) is null).Select(r => r.Binary).ToList();
        if (stillMissing.Count > 0)
        {
            throw new E2eException($"installed {string.Join(' ', packages)} but still cannot find: {string.Join(", ", stillMissing)}");
        }

        Console.WriteLine($"installed: {string.Join(' ', packages)}");
    }
}

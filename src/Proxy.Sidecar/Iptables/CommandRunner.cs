using System.ComponentModel;
using System.Diagnostics;

namespace Proxy.Sidecar.Iptables;

/// <summary>How an external program ended.</summary>
public readonly record struct CommandResult(int ExitCode, string StandardOutput, string StandardError);

/// <summary>Runs the iptables binaries. A seam so the apply/remove logic is tested without root.</summary>
public interface ICommandRunner
{
    /// <summary>The absolute path of <paramref name="program"/>, or null when it is not installed.</summary>
    string? Locate(string program);

    /// <summary>Runs <paramref name="path"/> to completion, feeding <paramref name="standardInput"/> if given.</summary>
    Task<CommandResult> RunAsync(string path, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken);
}

/// <summary>Runs programs with <see cref="Process"/>, looking them up in PATH and the sbin folders.</summary>
public sealed class ProcessCommandRunner : ICommandRunner
{
    // iptables lives in sbin, which a non-root PATH often lacks.
    private static readonly string[] ExtraFolders = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"];

    public string? Locate(string program)
    {
        if (program.Contains('/', StringComparison.Ordinal))
        {
            return File.Exists(program) ? program : null;
        }

        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var folder in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(folder, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        foreach (var folder in ExtraFolders)
        {
            var candidate = Path.Combine(folder, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public async Task<CommandResult> RunAsync(string path, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
    {
        var startInfo = new ProcessStartInfo(path)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = new Process { StartInfo = startInfo };
        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            return new CommandResult(127, "", $"cannot start {path}: {ex.Message}");
        }

        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            if (standardInput is not null)
            {
                await process.StandardInput.WriteAsync(standardInput.AsMemory(), cancellationToken);
            }

            process.StandardInput.Close();
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        catch (IOException)
        {
            // The program exited without reading its input; its exit code and stderr say why.
            await process.WaitForExitAsync(cancellationToken);
        }

        return new CommandResult(process.ExitCode, await stdout, await stderr);
    }
}

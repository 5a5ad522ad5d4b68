namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>The result of a command run to completion.</summary>
internal sealed record CommandResult(int ExitCode, string StandardOutput, string RecentOutput, TimeSpan Elapsed);

/// <summary>Runs a command to completion with a time limit; the process is killed on timeout or cancellation.</summary>
internal static class ProcessRunner
{
    public static async Task<CommandResult> RunAsync(
        string fileName,
        IEnumerable<string> arguments,
        TimeSpan timeout,
        CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null)
    {
        var name = Path.GetFileName(fileName);
        await using var child = ChildProcess.Start(name, fileName, arguments, keepAllOutput: true, environment, workingDirectory);
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await child.WaitForExitAsync(timeoutSource.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new E2eException($"{name} did not finish within {timeout.TotalSeconds:0} s; last output:\n{child.RecentOutput}");
        }

        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(child.StartTimestamp);
        return new CommandResult(child.ExitCode, child.StandardOutput, child.RecentOutput, elapsed);
    }
}

using System.Diagnostics;
using Proxy.Sidecar.Tests.Capture;

namespace Proxy.Sidecar.Tests.Demo;

/// <summary><c>sidecar demo</c> as its own process, stopped by a signal the way Ctrl+C or an orchestrator stops it.</summary>
public class DemoSignalTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// SIGTERM rather than SIGINT: a shell without job control starts background jobs with SIGINT ignored, and the
    /// child would inherit that; both signals take the same path in DemoCommand.
    /// </summary>
    [Fact]
    public async Task Demo_Sigterm_StopsCleanly_PrintsSummary_Exit0()
    {
        Assert.True(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "signals are POSIX");
        var start = new ProcessStartInfo(DotnetHost.Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList = { Path.Combine(AppContext.BaseDirectory, "sidecar.dll"), "demo", "--json", "--requests-per-second", "100" },
        };
        using var process = Process.Start(start)!;
        try
        {
            var stderr = process.StandardError.ReadToEndAsync();
            var lines = new List<string>();
            while (true)
            {
                var line = await process.StandardOutput.ReadLineAsync().WaitAsync(Timeout);
                if (line is null)
                {
                    Assert.Fail($"demo ended before its first interval: {string.Join('\n', lines)} stderr: {await stderr.WaitAsync(Timeout)}");
                }

                lines.Add(line);
                if (line.Contains("\"type\":\"interval\"", StringComparison.Ordinal))
                {
                    break;
                }
            }

            using (var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) } })!)
            {
                await kill.WaitForExitAsync().WaitAsync(Timeout);
                Assert.Equal(0, kill.ExitCode);
            }

            var rest = await process.StandardOutput.ReadToEndAsync().WaitAsync(Timeout);
            await process.WaitForExitAsync().WaitAsync(Timeout);

            var errors = await stderr.WaitAsync(Timeout);
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}; stderr: {errors}");
            var last = rest.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
            Assert.StartsWith("{\"type\":\"summary\"", last, StringComparison.Ordinal);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}

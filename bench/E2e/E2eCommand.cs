using System.Globalization;
using System.Runtime.InteropServices;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.E2e;

/// <summary>
/// <c>bench -- e2e</c>: installs missing tools, runs the chosen scenario, writes its markdown table under
/// bench/results/ and prints it. Every process started is killed on the way out, including on Ctrl-C and SIGTERM.
/// </summary>
internal static class E2eCommand
{
    public static int Run(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            if (!cancel.IsCancellationRequested)
            {
                Console.Error.WriteLine($"{context.Signal}: stopping, killing started processes");
                cancel.Cancel();
            }
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => ChildProcessRegistry.KillAll();
        try
        {
            return RunAsync(args, cancel.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine("e2e: interrupted");
            return 130;
        }
        catch (E2eException ex)
        {
            Console.Error.WriteLine($"e2e: {ex.Message}");
            return 1;
        }
        finally
        {
            ChildProcessRegistry.KillAll();
        }
    }

    private static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var options = E2eOptions.Parse(args);
        if (options.ShowHelp)
        {
            Console.WriteLine(E2eOptions.Usage);
            return 0;
        }

        var scenario = CreateScenario(options.Scenario);

        if (!OperatingSystem.IsLinux())
        {
            throw new E2eException("the e2e comparison needs Linux (/proc, splice, Debian packages)");
        }

        var root = E2eContext.FindRepositoryRoot();
        await ToolInstaller.EnsureAsync(scenario.RequiredTools(options), options.AllowInstall, cancellationToken);

        using var temp = new TempDirectory("proxy-bench-", options.KeepTemp);
        var context = new E2eContext(options, root, temp);
        var report = await scenario.RunAsync(context, cancellationToken);

        var output = options.OutputDirectory ?? Path.Combine(root, "bench", "results");
        Directory.CreateDirectory(output);
        var stamp = DateTimeOffset.UtcNow.ToString("yyyyMMdd-HHmm", CultureInfo.InvariantCulture);
        var file = Path.Combine(output, $"{scenario.Name}-{stamp}.md");
        var csv = Path.ChangeExtension(file, ".csv");
        await File.WriteAllTextAsync(file, report.Markdown, cancellationToken);
        await File.WriteAllTextAsync(csv, report.Csv, cancellationToken);
        Console.WriteLine();
        Console.WriteLine(report.Markdown);
        Console.WriteLine($"written: {file} (samples: {Path.GetFileName(csv)})");
        return 0;
    }

    /// <summary>Scenarios by <c>--scenario</c> name.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1859", Justification = "More scenarios are coming; the interface is the point.")]
    private static IScenario CreateScenario(string name) => name switch
    {
        "l4" => new L4Scenario(),
        "http" => new HttpScenario(),
        "h2" => new H2Scenario(),
        "mesh" => new MeshScenario(),
        _ => throw new E2eException($"unknown scenario '{name}' (known: l4, http, h2, mesh)"),
    };
}

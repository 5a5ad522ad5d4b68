using Microsoft.Extensions.Logging;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Cli;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// Runs the demo, all in this process and on loopback (no root, no iptables):
/// <code>
///   DemoClient ──HTTP/1.1──► sidecar listener 'demo' ──┬── x-version: v2 ──────► v2 (+5 ms, 2% 503)
///   (rate, concurrency,       (SidecarHost, routes)     └── split 90/10 ──► v1 / v2
///    header share)                    admin /metrics
/// </code>
/// 1. start the two versions (<see cref="DemoUpstreams"/>);
/// 2. build the sidecar configuration (<see cref="DemoConfig"/>) and start <see cref="SidecarHost"/>;
/// 3. print the banner, start the client, and every interval print the statistics (<see cref="DemoReport"/>);
/// 4. on cancellation (Ctrl+C) or after the duration: stop the client, then the sidecar, then the versions,
///    print the summary, exit 0.
/// </summary>
internal static class DemoApp
{
    public static async Task<int> RunAsync(DemoOptions options, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;

        // Warnings and errors of the sidecar and the versions go to stderr, so stdout stays the report (and pure JSON with --json).
        using var loggerFactory = LoggerFactory.Create(builder => builder
            .SetMinimumLevel(LogLevel.Warning)
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .AddSimpleConsole(o => o.SingleLine = true)
            .AddFilter("Microsoft.AspNetCore", LogLevel.Error));

        DemoUpstreams upstreams;
        try
        {
            upstreams = await DemoUpstreams.StartAsync(loggerFactory, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Ok;
        }
        catch (IOException e)
        {
            await stderr.WriteLineAsync($"error: sidecar demo: cannot start the demo service: {e.Message}");
            return ExitCodes.Failure;
        }

        await using (upstreams)
        {
            var config = DemoConfig.Build(options, upstreams.V1, upstreams.V2, out var configJson);
            var host = new SidecarHost(config, loggerFactory);
            await using (host)
            {
                try
                {
                    await host.StartAsync(cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return ExitCodes.Ok;
                }
                catch (IOException e)
                {
                    await stderr.WriteLineAsync($"error: sidecar demo: cannot start the sidecar: {e.Message}");
                    return ExitCodes.Failure;
                }

                var listener = host.AddressOf(DemoConfig.ListenerName)!;
                var admin = host.AddressOf("admin")!;
                var report = new DemoReport(stdout, options);
                await report.WriteStartAsync(new DemoStartInfo(listener, admin, upstreams.V1, upstreams.V2, configJson));

                using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                DemoStats stats;
                using (var client = new DemoClient(new Uri($"http://{listener}/"), options, time))
                {
                    try
                    {
                        await client.WarmUpAsync(stop.Token);
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                    }

                    // The duration counts from here: the counted run lasts as long as asked.
                    if (options.Duration is { } duration)
                    {
                        stop.CancelAfter(duration);
                    }

                    stats = new DemoStats(time);
                    var load = client.RunAsync(stats, stop.Token);
                    await ReportEveryIntervalAsync(report, stats, options.Interval, time, stop.Token);
                    await load;
                }

                await report.WriteSummaryAsync(stats.Snapshot());
            }
        }

        return ExitCodes.Ok;
    }

    private static async Task ReportEveryIntervalAsync(DemoReport report, DemoStats stats, TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                await report.WriteIntervalAsync(stats.Snapshot());
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}

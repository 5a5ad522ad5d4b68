using System.CommandLine;
using System.Runtime.InteropServices;
using Proxy.Sidecar.Cli;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// <c>sidecar demo</c>: a self-contained local demo of HTTP routing on loopback (see <see cref="DemoApp"/>).
/// Bad flags are all reported at once and exit 64.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        // Values are taken as text and validated together (DemoOptionsParser), so every bad flag is reported at once.
        var rate = new Option<string?>("--requests-per-second")
        {
            Description = "Requests the client sends per second in total; 0 sends as fast as the connections allow. Default 50.",
            HelpName = "n",
        };
        var concurrency = new Option<string?>("--concurrency")
        {
            Description = "Requests in flight at most (keep-alive connections to the sidecar). Default 4.",
            HelpName = "n",
        };
        var duration = new Option<string?>("--duration")
        {
            Description = "Stop after this long (e.g. 30s, 5m, 00:01:00). Default: run until Ctrl+C.",
            HelpName = "timespan",
        };
        var split = new Option<string?>("--split")
        {
            Description = "Weights of the canary route's split over the versions. Default v1:90,v2:10.",
            HelpName = "v1:w,v2:w",
        };
        var headerShare = new Option<string?>("--header-share")
        {
            Description = "Share (0 to 1) of requests that carry 'x-version: v2' and so take the header route to v2. Default 0.1.",
            HelpName = "share",
        };
        var json = new Option<bool>("--json")
        {
            Description = "Print one JSON object per line (start, every second, summary) instead of tables.",
        };

        var command = new Command(
            "demo",
            "Run a local demo on loopback (no root, no iptables): two versions of one HTTP service (v2 slower, 2% 503), a client, " +
            "and the sidecar routing between them with a 90/10 split and an 'x-version: v2' header route. Prints per-version " +
            "request counts, success rate and latency percentiles every second until interrupted.")
        {
            rate, concurrency, duration, split, headerShare, json,
        };

        command.SetAction(async (parse, cancellationToken) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var errors = new List<string>();
            var options = DemoOptionsParser.Parse(
                parse.GetValue(rate), parse.GetValue(concurrency), parse.GetValue(duration), parse.GetValue(split), parse.GetValue(headerShare),
                parse.GetValue(json), errors);
            if (options is null)
            {
                foreach (var error in errors)
                {
                    await stderr.WriteLineAsync($"error: {error}");
                }

                await stderr.WriteLineAsync("Run 'sidecar demo --help' for usage.");
                return ExitCodes.Usage;
            }

            // System.CommandLine leaves SIGINT/SIGTERM alone unless given a termination timeout (the default
            // terminates at once); the demo stops cleanly itself: client, sidecar, versions, summary, exit 0.
            // A second signal while stopping is not intercepted, so it terminates as usual.
            using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            return await DemoApp.RunAsync(options, stdout, stderr, interrupted.Token);

            void OnSignal(PosixSignalContext context)
            {
                if (!interrupted.IsCancellationRequested)
                {
                    context.Cancel = true;

                    // Not Cancel(): the demo's continuations must not run on the signal handling thread.
                    _ = interrupted.CancelAsync();
                }
            }
        });
        return command;
    }
}

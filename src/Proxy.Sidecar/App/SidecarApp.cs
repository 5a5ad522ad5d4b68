using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Transport;
using Proxy.Sidecar.Admin;

namespace Proxy.Sidecar.App;

/// <summary>
/// Runs the sidecar until it is stopped, then drains it (Admin/SidecarLifecycle.cs): logging, host, the start-up banner, signals.
/// SIGTERM or SIGINT (or <c>cancellationToken</c>), admin POST /drain and POST /quitquitquit all start the graceful
/// drain; a second SIGTERM/SIGINT during it closes what is left at once. Exits 0 once drained, timeout or not.
/// </summary>
internal static class SidecarApp
{
    public static async Task<int> RunAsync(ProxyConfig config, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken, ConfigSource? source = null)
    {
        // Must run before the first socket is created: .NET reads this switch once.
        SocketEngineSetup.Configure(config.Transport.InlineScheduling);

        using var loggerFactory = LoggerFactory.Create(builder => builder
            .SetMinimumLevel(ParseLevel(config.LogLevel))
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                o.UseUtcTimestamp = true;
            }));
        await using var host = new SidecarHost(config, loggerFactory, source: source);
        try
        {
            await host.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await stderr.WriteLineAsync($"error: cannot start listeners: {e.Message}");
            return 1;
        }
        catch (Proxy.Tls.Certificates.CertificateLoadException e)
        {
            // A certificate, key or CA file that exists but cannot be used: a configuration error.
            await stderr.WriteLineAsync($"error: {e.Message}");
            return Cli.ExitCodes.Usage;
        }
        catch (OperationCanceledException)
        {
            return 0;
        }

        await stdout.WriteLineAsync(Banner(host, config));
        await stdout.FlushAsync(CancellationToken.None);
        var lifecycle = host.Lifecycle;
        using var signals = new StopSignals(lifecycle);
        using var cancelled = cancellationToken.Register(static s => ((SidecarLifecycle)s!).RequestStop(StopReason.Signal), lifecycle);
        var reason = await lifecycle.StopRequested;
        await stdout.WriteLineAsync($"sidecar: draining ({SidecarLifecycle.Name(reason)}), up to {ValueParsers.FormatDuration(SidecarLifecycle.Timeout(reason, config.DrainTimeout))}");
        await stdout.FlushAsync(CancellationToken.None);
        var result = await host.Stopped;
        await stdout.WriteLineAsync(System.FormattableString.Invariant(
            $"sidecar: stopped ({SidecarLifecycle.Name(result.Reason)}): drained in {result.Elapsed.TotalMilliseconds:0} ms; {result.OpenAtStart} connection(s) were open, {result.Cut} cut at the drain timeout"));
        await stdout.FlushAsync(CancellationToken.None);
        return 0;
    }

    /// <summary>
    /// SIGTERM and SIGINT while the proxy runs: the first asks for a drain, a second one cuts it short. The runtime's
    /// default (exit at once) is cancelled; System.CommandLine leaves these signals to us for the run command.
    /// </summary>
    private sealed class StopSignals : IDisposable
    {
        private readonly SidecarLifecycle _lifecycle;
        private readonly PosixSignalRegistration _term;
        private readonly PosixSignalRegistration _interrupt;
        private int _count;

        public StopSignals(SidecarLifecycle lifecycle)
        {
            _lifecycle = lifecycle;
            _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        }

        private void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            if (Interlocked.Increment(ref _count) == 1)
            {
                _lifecycle.RequestStop(StopReason.Signal);
            }
            else
            {
                _lifecycle.CutNow();
            }
        }

        public void Dispose()
        {
            _term.Dispose();
            _interrupt.Dispose();
        }
    }

    internal static string Banner(SidecarHost host, ProxyConfig config)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("sidecar: listening");
        foreach (var (name, address) in host.BoundListeners)
        {
            sb.Append("  ").Append(name.PadRight(10)).Append(' ').Append(address).AppendLine();
        }

        sb.Append("  services: ").Append(config.Services.Count).Append(", splice: ").Append(Proxy.Core.Configuration.Setting.All.First(static x => x.Flag == "splice").Current(config)).AppendLine();
        if (config.OutboundListen is not null || config.InboundListen is not null)
        {
            sb.AppendLine("To capture a workload's traffic (as root, in its network namespace; the proxy runs as uid 1337):");
            sb.AppendLine("  sidecar iptables --dry-run     # print the rules");
            sb.AppendLine("  sidecar iptables               # apply them;  sidecar iptables --remove  to undo");
            sb.AppendLine("  setpriv --reuid=1337 --regid=1337 --clear-groups sidecar   # run the proxy exempt from capture");
        }

        return sb.ToString();
    }

    private static LogLevel ParseLevel(string level) => level switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "critical" => LogLevel.Critical,
        "none" => LogLevel.None,
        _ => LogLevel.Information,
    };
}

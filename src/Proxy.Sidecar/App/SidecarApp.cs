using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Transport;

namespace Proxy.Sidecar.App;

/// <summary>Runs the sidecar until cancelled (SIGINT/SIGTERM): logging, host, the start-up banner.</summary>
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
        await stdout.FlushAsync(cancellationToken);
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }

        await stdout.WriteLineAsync("sidecar: stopping");
        return 0;
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

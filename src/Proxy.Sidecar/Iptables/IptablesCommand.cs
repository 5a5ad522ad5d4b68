using System.CommandLine;

namespace Proxy.Sidecar.Iptables;

/// <summary>
/// <c>sidecar iptables</c>: installs (or removes, or prints) the nat rules that send the pod's TCP traffic
/// through the proxy, like Istio's istio-iptables and Linkerd's proxy-init. Run once per pod, as root
/// (CAP_NET_ADMIN), before the application starts.
/// </summary>
public static class IptablesCommand
{
    /// <summary>Exit code for bad flags (EX_USAGE).</summary>
    public const int UsageError = 64;

    public static Command Create()
    {
        // Values are taken as text and validated together by IptablesOptionsParser, so every bad flag
        // is reported at once and the exit code is 64 whatever the problem.
        var inboundPort = new Option<string?>("--inbound-port") { Description = "Port of the proxy's inbound capture listener (PREROUTING is redirected here). Default 15006." };
        var outboundPort = new Option<string?>("--outbound-port") { Description = "Port of the proxy's outbound capture listener (OUTPUT is redirected here). Default 15001." };
        var proxyUid = new Option<string?>("--proxy-uid") { Description = "Uid of the proxy process; its own connections are not captured. Default 1337; empty disables." };
        var proxyGid = new Option<string?>("--proxy-gid") { Description = "Gid of the proxy process; its own connections are not captured. Default none." };
        var proxyMark = new Option<string?>("--proxy-mark") { Description = "SO_MARK the proxy sets on its sockets (value[/mask], decimal or 0x hex); marked packets are not captured. Default none." };
        var proxyPorts = new Option<string?>("--proxy-ports") { Description = "The proxy's own listener ports (admin, health), never redirected inbound. Default 15000,15021; the capture ports are always excluded." };
        var excludeInboundPorts = new Option<string?>("--exclude-inbound-ports") { Description = "Comma-separated inbound destination ports that reach the application directly." };
        var includeInboundPorts = new Option<string?>("--include-inbound-ports") { Description = "Comma-separated inbound ports to capture; '*' (default) captures all, empty captures none." };
        var excludeOutboundPorts = new Option<string?>("--exclude-outbound-ports") { Description = "Comma-separated outbound destination ports that leave directly." };
        var excludeOutboundCidrs = new Option<string?>("--exclude-outbound-cidrs") { Description = "Comma-separated destination CIDRs (IPv4 and IPv6) that leave directly." };
        var includeOutboundCidrs = new Option<string?>("--include-outbound-cidrs") { Description = "Comma-separated destination CIDRs to capture; '*' (default) captures all, empty captures none." };
        var ipv6 = new Option<string?>("--ipv6") { Description = "Also write ip6tables rules: true (default) or false." };
        var mode = new Option<string?>("--mode") { Description = "iptables backend: auto (default; the one the node already uses), nft or legacy." };
        var remove = new Option<bool>("--remove") { Description = "Remove every chain and rule this command creates, and nothing else." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the exact iptables-restore input for IPv4 and IPv6 and change nothing (no root needed)." };

        var command = new Command("iptables", "Set up transparent capture: redirect the pod's inbound and outbound TCP to the proxy with iptables (table nat).")
        {
            inboundPort, outboundPort, proxyUid, proxyGid, proxyMark, proxyPorts,
            excludeInboundPorts, includeInboundPorts, excludeOutboundPorts, excludeOutboundCidrs, includeOutboundCidrs,
            ipv6, mode, remove, dryRun,
        };
        command.TreatUnmatchedTokensAsErrors = false;

        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            var arguments = new IptablesArguments
            {
                InboundPort = parseResult.GetValue(inboundPort),
                OutboundPort = parseResult.GetValue(outboundPort),
                ProxyUid = parseResult.GetValue(proxyUid),
                ProxyGid = parseResult.GetValue(proxyGid),
                ProxyMark = parseResult.GetValue(proxyMark),
                ProxyPorts = parseResult.GetValue(proxyPorts),
                ExcludeInboundPorts = parseResult.GetValue(excludeInboundPorts),
                IncludeInboundPorts = parseResult.GetValue(includeInboundPorts),
                ExcludeOutboundPorts = parseResult.GetValue(excludeOutboundPorts),
                ExcludeOutboundCidrs = parseResult.GetValue(excludeOutboundCidrs),
                IncludeOutboundCidrs = parseResult.GetValue(includeOutboundCidrs),
                Ipv6 = parseResult.GetValue(ipv6),
                Mode = parseResult.GetValue(mode),
                Remove = parseResult.GetValue(remove),
                DryRun = parseResult.GetValue(dryRun),
            };

            var options = IptablesOptionsParser.Parse(arguments, out var errors);
            if (parseResult.UnmatchedTokens.Count > 0)
            {
                await error.WriteLineAsync($"sidecar iptables: unknown argument(s): {string.Join(' ', parseResult.UnmatchedTokens)}. See 'sidecar iptables --help'.");
            }

            if (options is null || parseResult.UnmatchedTokens.Count > 0)
            {
                foreach (var message in errors)
                {
                    await error.WriteLineAsync($"sidecar iptables: {message}");
                }

                return UsageError;
            }

            var configurator = new IptablesConfigurator(new ProcessCommandRunner(), output, error);
            return await configurator.RunAsync(options, cancellationToken);
        });

        return command;
    }
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Proxy.Sidecar.Iptables;

/// <summary>The two address families, each with its own iptables binary and rule file.</summary>
public enum IpFamily
{
    V4,
    V6,
}

/// <summary>
/// Generates the <c>iptables-restore --noflush</c> input for table nat. Pure: the same options and the same
/// existing table give the same text, so it is tested with golden strings.
/// </summary>
/// <remarks>
/// Shape (Istio's, with our chain names):
/// <code>
/// PREROUTING -p tcp -> PROXY_INBOUND: proxy ports and excluded ports RETURN, the rest -> PROXY_IN_REDIRECT (REDIRECT :15006)
/// OUTPUT -p tcp     -> PROXY_OUTPUT:
///   1. from the inbound passthrough source 127.0.0.6 / ::6 via lo: RETURN
///   2. per proxy owner (uid, gid, mark):
///        proxy -> a local non-loopback address via lo (app calling its own pod IP through the proxy): PROXY_IN_REDIRECT
///        not the proxy, via lo: RETURN (the app talking to itself is not captured)
///        the proxy: RETURN (its upstream connections are never captured: no loop)
///   3. to 127.0.0.1 / ::1: RETURN
///   4. excluded CIDRs and ports: RETURN
///   5. the rest (or only the included CIDRs) -> PROXY_REDIRECT (REDIRECT :15001)
/// </code>
/// Declaring our chains in a --noflush restore flushes them if they exist, so re-applying replaces our
/// rules atomically and leaves everybody else's alone. The jumps from the built-in chains are written only
/// when they are missing (the caller reads the table first), so applying twice equals applying once.
/// </remarks>
public static class IptablesRules
{
    public const string InboundChain = "PROXY_INBOUND";
    public const string InboundRedirectChain = "PROXY_IN_REDIRECT";
    public const string OutputChain = "PROXY_OUTPUT";
    public const string RedirectChain = "PROXY_REDIRECT";

    /// <summary>Every chain this tool creates, in declaration order.</summary>
    public static IReadOnlyList<string> Chains { get; } = [InboundChain, InboundRedirectChain, OutputChain, RedirectChain];

    /// <summary>The jump into the inbound chain, exactly as iptables-save prints it.</summary>
    public const string PreroutingJump = "-A PREROUTING -p tcp -j " + InboundChain;

    /// <summary>The jump into the outbound chain, exactly as iptables-save prints it.</summary>
    public const string OutputJump = "-A OUTPUT -p tcp -j " + OutputChain;

    /// <summary>
    /// The restore input that brings table nat of <paramref name="family"/> to the state described by
    /// <paramref name="options"/>, given what the table holds now (<paramref name="existing"/>; use
    /// <see cref="NatTableState.Empty"/> for a fresh table).
    /// </summary>
    public static string BuildApply(IptablesOptions options, IpFamily family, NatTableState existing)
    {
        var sb = new StringBuilder();
        sb.Append("*nat\n");
        foreach (var chain in Chains)
        {
            sb.Append(':').Append(chain).Append(" - [0:0]\n");
        }

        var loopback = family == IpFamily.V4 ? "127.0.0.1/32" : "::1/128";
        var passthroughSource = family == IpFamily.V4 ? "127.0.0.6/32" : "::6/128";

        Rule(sb, InboundRedirectChain, $"-p tcp -j REDIRECT --to-ports {Num(options.InboundPort)}");
        Rule(sb, RedirectChain, $"-p tcp -j REDIRECT --to-ports {Num(options.OutboundPort)}");

        // Inbound.
        if (options.CapturesInbound)
        {
            foreach (var port in InboundExcludedPorts(options))
            {
                Rule(sb, InboundChain, $"-p tcp --dport {Num(port)} -j RETURN");
            }

            if (options.IncludeInboundPorts is null)
            {
                Rule(sb, InboundChain, $"-p tcp -j {InboundRedirectChain}");
            }
            else
            {
                foreach (var port in options.IncludeInboundPorts)
                {
                    Rule(sb, InboundChain, $"-p tcp --dport {Num(port)} -j {InboundRedirectChain}");
                }
            }
        }

        // Outbound.
        Rule(sb, OutputChain, $"-o lo -s {passthroughSource} -j RETURN");
        foreach (var (match, negated) in OwnerMatches(options))
        {
            if (options.CapturesInbound)
            {
                Rule(sb, OutputChain, $"! -d {loopback} -o lo {match} -j {InboundRedirectChain}");
            }

            Rule(sb, OutputChain, $"-o lo {negated} -j RETURN");
            Rule(sb, OutputChain, $"{match} -j RETURN");
        }

        Rule(sb, OutputChain, $"-d {loopback} -j RETURN");
        foreach (var network in options.ExcludeOutboundCidrs)
        {
            if (FamilyOf(network) == family)
            {
                Rule(sb, OutputChain, $"-d {network} -j RETURN");
            }
        }

        foreach (var port in options.ExcludeOutboundPorts)
        {
            Rule(sb, OutputChain, $"-p tcp --dport {Num(port)} -j RETURN");
        }

        if (options.IncludeOutboundCidrs is null)
        {
            Rule(sb, OutputChain, $"-j {RedirectChain}");
        }
        else
        {
            foreach (var network in options.IncludeOutboundCidrs)
            {
                if (FamilyOf(network) == family)
                {
                    Rule(sb, OutputChain, $"-d {network} -j {RedirectChain}");
                }
            }
        }

        // Jumps from the built-in chains: keep the first copy of each wanted jump, delete anything else
        // that points into our chains (duplicates, or a jump this configuration no longer wants).
        var wanted = new List<string>(2);
        if (options.CapturesInbound)
        {
            wanted.Add(PreroutingJump);
        }

        wanted.Add(OutputJump);
        var kept = new List<string>(2);
        foreach (var jump in existing.JumpRules)
        {
            if (wanted.Contains(jump) && !kept.Contains(jump))
            {
                kept.Add(jump);
            }
            else
            {
                sb.Append("-D").Append(jump.AsSpan(2)).Append('\n');
            }
        }

        foreach (var jump in wanted)
        {
            if (!kept.Contains(jump))
            {
                sb.Append(jump).Append('\n');
            }
        }

        sb.Append("COMMIT\n");
        return sb.ToString();
    }

    /// <summary>
    /// The restore input that removes every jump into our chains and the chains themselves, or null when
    /// the table holds none of them. Rules in other chains are not touched.
    /// </summary>
    public static string? BuildRemove(NatTableState existing)
    {
        if (!existing.HasAny)
        {
            return null;
        }

        var sb = new StringBuilder();
        sb.Append("*nat\n");
        // Declaring flushes our chains (or creates a missing one), so the -X below cannot fail on
        // references between our own chains.
        foreach (var chain in Chains)
        {
            sb.Append(':').Append(chain).Append(" - [0:0]\n");
        }

        foreach (var jump in existing.JumpRules)
        {
            sb.Append("-D").Append(jump.AsSpan(2)).Append('\n');
        }

        foreach (var chain in Chains)
        {
            sb.Append("-X ").Append(chain).Append('\n');
        }

        sb.Append("COMMIT\n");
        return sb.ToString();
    }

    /// <summary>The inbound ports never redirected: the capture ports, the proxy's own ports, the user's exclusions (sorted, unique).</summary>
    internal static SortedSet<int> InboundExcludedPorts(IptablesOptions options)
    {
        var ports = new SortedSet<int> { options.InboundPort, options.OutboundPort };
        ports.UnionWith(options.ProxyPorts);
        ports.UnionWith(options.ExcludeInboundPorts);
        return ports;
    }

    private static List<(string Match, string Negated)> OwnerMatches(IptablesOptions options)
    {
        var matches = new List<(string, string)>(3);
        if (options.ProxyUid is { } uid)
        {
            matches.Add(($"-m owner --uid-owner {Num(uid)}", $"-m owner ! --uid-owner {Num(uid)}"));
        }

        if (options.ProxyGid is { } gid)
        {
            matches.Add(($"-m owner --gid-owner {Num(gid)}", $"-m owner ! --gid-owner {Num(gid)}"));
        }

        if (options.ProxyMark is { } mark)
        {
            matches.Add(($"-m mark --mark {mark}", $"-m mark ! --mark {mark}"));
        }

        return matches;
    }

    internal static IpFamily FamilyOf(IPNetwork network) =>
        network.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? IpFamily.V4 : IpFamily.V6;

    private static void Rule(StringBuilder sb, string chain, string rest) =>
        sb.Append("-A ").Append(chain).Append(' ').Append(rest).Append('\n');

    private static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>What table nat holds of ours, read from <c>iptables-save -t nat</c>.</summary>
public sealed class NatTableState
{
    public static NatTableState Empty { get; } = new([], []);

    public NatTableState(IReadOnlyList<string> ourChains, IReadOnlyList<string> jumpRules)
    {
        OurChains = ourChains;
        JumpRules = jumpRules;
    }

    /// <summary>Our chains that exist.</summary>
    public IReadOnlyList<string> OurChains { get; }

    /// <summary>Rules in other chains that jump to one of ours, as "-A CHAIN ..." lines in table order.</summary>
    public IReadOnlyList<string> JumpRules { get; }

    public bool HasAny => OurChains.Count > 0 || JumpRules.Count > 0;

    /// <summary>Reads the nat section of iptables-save output (other tables and comments are ignored).</summary>
    public static NatTableState Parse(string saveOutput)
    {
        var chains = new List<string>();
        var jumps = new List<string>();
        var inNat = false;
        foreach (var raw in saveOutput.Split('\n'))
        {
            var line = raw.TrimEnd('\r', ' ');
            if (line.StartsWith('*'))
            {
                inNat = line == "*nat";
                continue;
            }

            if (!inNat)
            {
                continue;
            }

            if (line.StartsWith(':'))
            {
                var end = line.IndexOf(' ', StringComparison.Ordinal);
                var name = end < 0 ? line[1..] : line[1..end];
                if (IptablesRules.Chains.Contains(name))
                {
                    chains.Add(name);
                }
            }
            else if (line.StartsWith("-A ", StringComparison.Ordinal))
            {
                var chainEnd = line.IndexOf(' ', 3);
                var chain = chainEnd < 0 ? line[3..] : line[3..chainEnd];
                if (!IptablesRules.Chains.Contains(chain) && JumpTarget(line) is { } target && IptablesRules.Chains.Contains(target))
                {
                    jumps.Add(line);
                }
            }
        }

        return new NatTableState(chains, jumps);
    }

    private static string? JumpTarget(string rule)
    {
        var index = rule.LastIndexOf(" -j ", StringComparison.Ordinal);
        if (index < 0)
        {
            index = rule.LastIndexOf(" -g ", StringComparison.Ordinal);
        }

        if (index < 0)
        {
            return null;
        }

        var start = index + 4;
        var end = rule.IndexOf(' ', start);
        return end < 0 ? rule[start..] : rule[start..end];
    }
}

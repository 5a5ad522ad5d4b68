using System.Net;

namespace Proxy.Sidecar.Iptables;

/// <summary>Which iptables backend writes the rules.</summary>
public enum IptablesMode
{
    /// <summary>Pick the backend that already holds rules (see <see cref="IptablesBackendResolver"/>).</summary>
    Auto,

    /// <summary>iptables-nft (the nf_tables kernel API).</summary>
    Nft,

    /// <summary>iptables-legacy (the x_tables kernel API).</summary>
    Legacy,
}

/// <summary>A packet mark (SO_MARK) and an optional mask, as iptables' <c>-m mark --mark value[/mask]</c>.</summary>
public readonly record struct PacketMark(uint Value, uint? Mask)
{
    public override string ToString() => Mask is { } mask ? $"0x{Value:x}/0x{mask:x}" : $"0x{Value:x}";
}

/// <summary>
/// What <c>sidecar iptables</c> sets up. Immutable, validated as a whole by <see cref="IptablesOptionsParser"/>.
/// Defaults follow Istio's conventions (inbound 15006, outbound 15001, proxy uid 1337).
/// </summary>
public sealed record IptablesOptions
{
    /// <summary>The proxy's inbound capture listener: PREROUTING traffic is redirected here.</summary>
    public int InboundPort { get; init; } = 15006;

    /// <summary>The proxy's outbound capture listener: OUTPUT traffic is redirected here.</summary>
    public int OutboundPort { get; init; } = 15001;

    /// <summary>Sockets owned by this uid (the proxy's own) are never captured outbound.</summary>
    public int? ProxyUid { get; init; } = 1337;

    /// <summary>Sockets owned by this gid are never captured outbound.</summary>
    public int? ProxyGid { get; init; }

    /// <summary>Packets carrying this mark (set by the proxy with SO_MARK) are never captured outbound.</summary>
    public PacketMark? ProxyMark { get; init; }

    /// <summary>
    /// The proxy's own listener ports other than the capture ports (admin 15000, health 15021): never
    /// redirected inbound. The two capture ports are always excluded as well.
    /// </summary>
    public IReadOnlyList<int> ProxyPorts { get; init; } = [15000, 15021];

    /// <summary>Destination ports whose inbound traffic reaches the application directly.</summary>
    public IReadOnlyList<int> ExcludeInboundPorts { get; init; } = [];

    /// <summary>Only these inbound destination ports are captured; null captures every port; empty captures none.</summary>
    public IReadOnlyList<int>? IncludeInboundPorts { get; init; }

    /// <summary>Destination ports whose outbound traffic leaves directly.</summary>
    public IReadOnlyList<int> ExcludeOutboundPorts { get; init; } = [];

    /// <summary>Destination networks whose outbound traffic leaves directly (IPv4 and IPv6 mixed).</summary>
    public IReadOnlyList<IPNetwork> ExcludeOutboundCidrs { get; init; } = [];

    /// <summary>Only outbound traffic to these networks is captured; null captures everything; empty captures nothing.</summary>
    public IReadOnlyList<IPNetwork>? IncludeOutboundCidrs { get; init; }

    /// <summary>Also write ip6tables rules.</summary>
    public bool Ipv6 { get; init; } = true;

    public IptablesMode Mode { get; init; } = IptablesMode.Auto;

    /// <summary>Remove every chain and jump rule this tool creates, and nothing else.</summary>
    public bool Remove { get; init; }

    /// <summary>Print the iptables-restore input and change nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>Whether any inbound port is captured.</summary>
    public bool CapturesInbound => IncludeInboundPorts is null || IncludeInboundPorts.Count > 0;
}

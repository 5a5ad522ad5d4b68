using System.Net;

namespace Proxy.Core.Configuration;

/// <summary>DNS discovery settings shared by every service with <c>dns</c>; file section <c>dns</c>.</summary>
public sealed record DnsConfig
{
    /// <summary>Default port of a DNS server given without one.</summary>
    public const int DefaultPort = 53;

    /// <summary>
    /// The servers queried (in order, the next on timeout or failure); empty: the system's resolvers (/etc/resolv.conf).
    /// Flag <c>--dns-server</c>, key <c>dns.servers</c>.
    /// </summary>
    public IReadOnlyList<IPEndPoint> Servers { get; init; } = [];

    /// <summary>How long one query may take before the next server (or a retry) is tried. Flag <c>--dns-timeout</c>.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(2);
}

/// <summary>Which records a service's <c>dns</c> name is looked up as.</summary>
public enum DnsRecordKind
{
    /// <summary>A and AAAA records (both families); the port comes from the config (<c>"type": "ip"</c>, the default).</summary>
    Ip,

    /// <summary>A records only (<c>"type": "a"</c>).</summary>
    A,

    /// <summary>AAAA records only (<c>"type": "aaaa"</c>).</summary>
    Aaaa,

    /// <summary>SRV records: target, port and weight from each record; targets resolved to A and AAAA (<c>"type": "srv"</c>).</summary>
    Srv,
}

/// <summary>
/// A service's endpoints from DNS (config key <c>dns</c> of a service): looked up at start and again when the answer's
/// TTL runs out, clamped to [<see cref="MinRefresh"/>, <see cref="MaxRefresh"/>].
/// </summary>
/// <param name="Name">The DNS name (e.g. <c>api.default.svc.cluster.local</c>, or <c>_http._tcp.api.example</c> for SRV).</param>
public sealed record ServiceDnsConfig(string Name)
{
    public static readonly TimeSpan DefaultMinRefresh = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan DefaultMaxRefresh = TimeSpan.FromMinutes(5);

    /// <summary>The endpoints' port (A/AAAA); 0 with SRV (the records carry it).</summary>
    public int Port { get; init; }

    public DnsRecordKind Type { get; init; } = DnsRecordKind.Ip;

    /// <summary>Shortest time between lookups (a TTL below it, or 0, waits this long); also the retry delay after a failed lookup.</summary>
    public TimeSpan MinRefresh { get; init; } = DefaultMinRefresh;

    /// <summary>Longest time between lookups, whatever the TTL says.</summary>
    public TimeSpan MaxRefresh { get; init; } = DefaultMaxRefresh;

    /// <summary>The config spellings of <see cref="DnsRecordKind"/>, in its order.</summary>
    public static IReadOnlyList<string> TypeNames { get; } = ["ip", "a", "aaaa", "srv"];

    public static string TypeName(DnsRecordKind kind) => TypeNames[(int)kind];
}

using System.Net;
using Proxy.Core.Balancing;
using Proxy.Core.Detection;
using Proxy.Core.Tcp;

namespace Proxy.Core.Configuration;

// The effective configuration: immutable records, validated as a whole by ConfigLoader before any
// listener binds. A reload (a later issue) builds a new ProxyConfig and swaps it atomically.

public sealed record ProxyConfig
{
    /// <summary>Outbound capture listener (iptables OUTPUT redirects here). Null when off.</summary>
    public IPEndPoint? OutboundListen { get; init; } = new(IPAddress.IPv6Any, 15001);

    /// <summary>Inbound capture listener (iptables PREROUTING redirects here). Null when off.</summary>
    public IPEndPoint? InboundListen { get; init; } = new(IPAddress.IPv6Any, 15006);

    /// <summary>Admin listener (/ready, /metrics, /config). Null when off.</summary>
    public IPEndPoint? AdminListen { get; init; } = new(IPAddress.Loopback, 15000);

    public TransportConfig Transport { get; init; } = new();

    public TcpConfig Tcp { get; init; } = new();

    public DetectConfig Detect { get; init; } = new();

    /// <summary>Explicit (non-captured) listeners, each forwarding to one service.</summary>
    public IReadOnlyList<ListenerConfig> Listeners { get; init; } = [];

    public IReadOnlyList<ServiceConfig> Services { get; init; } = [];

    /// <summary>Minimum log level: trace, debug, information, warning, error, critical, none.</summary>
    public string LogLevel { get; init; } = "information";
}

/// <summary>Tuning of our socket transport (see Proxy.Core.Transport).</summary>
public sealed record TransportConfig
{
    public int ReadBufferSize { get; init; } = 32 * 1024;

    /// <summary>IO queues the transport schedules on; 0 schedules on the thread pool.</summary>
    public int IoQueues { get; init; } = Math.Min(Environment.ProcessorCount, 16);

    public int Backlog { get; init; } = 512;

    public bool NoDelay { get; init; } = true;

    /// <summary>Run socket completions and pipe continuations inline (no thread hop). Nothing on that path may block.</summary>
    public bool InlineScheduling { get; init; } = true;
}

/// <summary>Opaque TCP forwarding.</summary>
public sealed record TcpConfig
{
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Maximum concurrent downstream connections per listener; 0 means unlimited.</summary>
    public int MaxConnections { get; init; }

    public SpliceMode Splice { get; init; } = SpliceMode.Auto;
}

/// <summary>Protocol detection on the capture listeners (see Proxy.Core.Detection).</summary>
public sealed record DetectConfig
{
    /// <summary>How long to wait for a client's first bytes before forwarding as opaque TCP.</summary>
    public TimeSpan Timeout { get; init; } = new ProtocolDetectorOptions().Timeout;

    /// <summary>Original destination ports that skip detection (server-speaks-first protocols), sorted, distinct.</summary>
    public IReadOnlyList<int> OpaquePorts { get; init; } = ProtocolDetectorOptions.DefaultOpaquePorts;
}

/// <summary>An explicit listener: every connection accepted on <see cref="Address"/> goes to <see cref="Service"/>.</summary>
public sealed record ListenerConfig(string Name, IPEndPoint Address, string Service);

/// <summary>
/// A service: its virtual addresses (what clients dial, e.g. a ClusterIP:port) and the endpoints
/// (instances) behind them. A captured connection whose original destination is one of the virtual
/// addresses is balanced across the endpoints; any other destination is passed through as it is.
/// </summary>
public sealed record ServiceConfig(string Name, IReadOnlyList<IPEndPoint> Addresses, IReadOnlyList<IPEndPoint> Endpoints)
{
    /// <summary>How connections (requests) are spread over the endpoints; config key <c>balancer</c>.</summary>
    public BalancerKind Balancer { get; init; } = BalancerKind.RoundRobin;

    /// <summary>What the ring hash balancer hashes; config key <c>hashOn</c>. Only set with <see cref="BalancerKind.RingHash"/>.</summary>
    public HashOn HashOn { get; init; } = HashOn.None;

    /// <summary>The endpoints' weights, parallel to <see cref="Endpoints"/>; empty means every weight is 1.</summary>
    public IReadOnlyList<int> Weights { get; init; } = [];

    /// <summary>The weight of endpoint <paramref name="index"/> (1 when no weights are given).</summary>
    public int WeightOf(int index) => Weights.Count == 0 ? 1 : Weights[index];
}

/// <summary>The key a hashing balancer uses. L4 knows only the source IP; the HTTP stage will add header and cookie.</summary>
public enum HashOn
{
    /// <summary>No key: a ring hash balancer places each connection at a random point.</summary>
    None,

    /// <summary>The client's IP address (not its port), so one client keeps reaching one endpoint.</summary>
    SourceIp,
}

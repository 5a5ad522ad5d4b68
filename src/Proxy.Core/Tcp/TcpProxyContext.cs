namespace Proxy.Core.Tcp;

/// <summary>Whether the opaque TCP stage forwards with splice(2) (<see cref="IRawSocketForwarder"/>) or with pipes.</summary>
public enum SpliceMode
{
    /// <summary>Splice when a supported raw forwarder is configured and both sockets are untouched; else pipes, silently.</summary>
    Auto,

    /// <summary>As <see cref="Auto"/>, but falling back to pipes is logged as a warning (the operator asked for splice).</summary>
    Always,

    /// <summary>Always pipes.</summary>
    Never,
}

/// <summary>Per-listener (or per-service) settings of the opaque TCP stage.</summary>
/// <param name="ListenerName">Listener name for logs and the "listener" metrics tag (e.g. "outbound").</param>
/// <param name="ServiceName">Service name for logs and the "service" metrics tag (bounded set: not an address).</param>
public sealed record TcpProxyContext(string ListenerName, string ServiceName)
{
    /// <summary>Idle timeout and other per-session tuning.</summary>
    public TcpForwardOptions ForwardOptions { get; init; } = new();

    /// <summary>The splice forwarder, if the platform has one.</summary>
    public IRawSocketForwarder? RawForwarder { get; init; }

    public SpliceMode SpliceMode { get; init; } = SpliceMode.Auto;

    /// <summary>The SNI of a TLS passthrough connection (lower-cased), logged with it; null for other connections.</summary>
    public string? ServerName { get; init; }

    /// <summary>Dials instead of the stage's own connector (a service with TLS origination); null: the stage's.</summary>
    public Upstream.IUpstreamConnector? Connector { get; init; }
}

using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Tcp;
using Proxy.Core.Upstream;
using Proxy.Http.Http1;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Forwards HTTP/1.1 (and 1.0) requests of client connections to upstreams: one instance per listener,
/// immutable, shared by all its connections. Each call to <see cref="HandleAsync"/> runs one client
/// connection to its end with a per-connection session (parsers, heads, body readers, timers) reused for
/// every request on it. See README.md in this folder for the flow and the decisions.
/// </summary>
public sealed class Http1Forwarder
{
    /// <param name="listener">Listener name used in records and proxy-made responses.</param>
    /// <param name="pool">HTTP/1.1 keep-alive connections to upstreams.</param>
    /// <param name="options">Parser limits, timeouts, observer.</param>
    /// <param name="http2Pool">HTTP/2 upstream streams (services whose upstream protocol is HTTP/2, or "same" for
    /// HTTP/2 clients); null: every request goes over <paramref name="pool"/>.</param>
    public Http1Forwarder(string listener, IUpstreamPool pool, Http1ForwarderOptions? options = null, IUpstreamPool? http2Pool = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(listener);
        ArgumentNullException.ThrowIfNull(pool);
        options ??= new Http1ForwarderOptions();
        var errors = options.Validate();
        if (errors.Count != 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }

        Listener = listener;
        Pool = pool;
        Http2Pool = http2Pool;
        Options = options;
        RequestParser = new Http1RequestHeadParser(options.Parser);
        ResponseParser = new Http1ResponseHeadParser(options.Parser);
        Tunnel = new PipeForwarder(options.TimeProvider);
        TunnelOptions = new TcpForwardOptions { IdleTimeout = options.TunnelIdleTimeout };
        Logger = options.LoggerFactory?.CreateLogger<Http1Forwarder>() ?? (ILogger)NullLogger.Instance;
    }

    /// <summary>Listener name used in records and proxy-made responses.</summary>
    public string Listener { get; }

    public Http1ForwarderOptions Options { get; }

    internal IUpstreamPool Pool { get; }

    internal IUpstreamPool? Http2Pool { get; }

    internal Http1RequestHeadParser RequestParser { get; }

    internal Http1ResponseHeadParser ResponseParser { get; }

    internal PipeForwarder Tunnel { get; }

    internal TcpForwardOptions TunnelOptions { get; }

    internal ILogger Logger { get; }

    /// <summary>
    /// Serves the requests of <paramref name="downstream"/> until the client closes, a request or response
    /// ends the connection, or <paramref name="cancellationToken"/> fires. Completes the connection's pipes
    /// (graceful close, or a reset when a response could not be finished); the caller disposes the connection.
    /// Never throws for network or protocol failures.
    /// </summary>
    public async Task HandleAsync(ConnectionContext downstream, Http1Routing routing, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(downstream);
        ArgumentNullException.ThrowIfNull(routing);
        using var session = new Http1ForwardingSession(this, downstream, routing, cancellationToken);
        await session.RunAsync().ConfigureAwait(false);
    }
}

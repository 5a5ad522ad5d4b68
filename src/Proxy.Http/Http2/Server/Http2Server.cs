using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// Serves HTTP/2 client connections (h2c with prior knowledge) of one listener: one instance per listener,
/// immutable, shared by all its connections. Requests are forwarded by <see cref="Forwarder"/> (routing, split,
/// balancing, pools, proxy-made answers, telemetry) over per-connection lanes; see README.md in this folder.
/// </summary>
public sealed class Http2Server
{
    public Http2Server(Http1Forwarder forwarder, Http2ServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(forwarder);
        options ??= new Http2ServerOptions();
        var errors = options.Validate();
        if (errors.Count != 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }

        Forwarder = forwarder;
        Options = options;
        Logger = forwarder.Options.LoggerFactory?.CreateLogger<Http2Server>() ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    public Http1Forwarder Forwarder { get; }

    public Http2ServerOptions Options { get; }

    internal ILogger Logger { get; }

    /// <summary>
    /// Serves <paramref name="connection"/> (its input starts with the client preface) until the client closes it,
    /// a connection error ends it (GOAWAY with the RFC 9113 code) or <paramref name="cancellationToken"/> fires.
    /// Never throws for network or protocol failures; the caller disposes the connection.
    /// </summary>
    public async Task HandleAsync(ConnectionContext connection, Http1Routing routing, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(routing);
        using var session = new Http2ServerSession(this, connection, routing, cancellationToken);
        await session.RunAsync().ConfigureAwait(false);
    }
}

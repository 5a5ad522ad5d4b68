using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Metrics;
using Proxy.Tls.Connections;
using Proxy.Tls.Mesh;
using Proxy.Tls.Passthrough;
using Proxy.Tls.Termination;

namespace Proxy.Sidecar.App;

/// <summary>What the mesh stage found at the start of an inbound connection.</summary>
internal enum MeshArrival
{
    /// <summary>A ClientHello offering a mesh ALPN protocol: terminate it (<see cref="MeshInboundStage.TerminateAsync"/>).</summary>
    Mesh,

    /// <summary>Plaintext, or TLS that is not the mesh's (permissive: handle the connection as without a mesh).</summary>
    Other,

    /// <summary>No byte within the detection timeout (permissive: forward as opaque TCP without detecting again).</summary>
    Silent,

    /// <summary>Refused (strict mode and not mesh mTLS), or the socket failed: the connection was reset and logged.</summary>
    Closed,
}

/// <summary>
/// Mesh mTLS on the inbound side (issue 5 part 4), for the inbound capture listener and explicit listeners with
/// <c>"mesh"</c>. Per connection, when the port's mode is not <see cref="MeshMode.Disable"/>:
/// <list type="number">
/// <item>peek the first bytes (nothing consumed): a TLS ClientHello whose ALPN offers a mesh protocol
/// (<see cref="MeshAlpn"/>) comes from a peer sidecar; anything else is plaintext or the app's own TLS;</item>
/// <item>mesh: terminate with the workload certificate, require the client's certificate and verify it by the mesh's
/// trust (chain to the trust bundle, clientAuth, a SPIFFE ID in the root's trust domain); the decrypted connection
/// carries the peer's identity (<c>IPeerIdentityFeature</c>) and the inner protocol the ALPN chose;</item>
/// <item>not mesh: <see cref="MeshMode.Strict"/> resets it (counted <c>refused</c>, logged with what arrived);
/// <see cref="MeshMode.Permissive"/> hands it back to the listener unchanged.</item>
/// </list>
/// Every decision is counted in <c>proxy_mesh_inbound_connections_total{listener, mode, result}</c>.
/// </summary>
internal sealed partial class MeshInboundStage(MeshConfig config, TlsTerminator terminator, ClientHelloPeeker peeker, TimeSpan timeout, ProxyMetrics metrics, ILogger logger)
{
    public MeshConfig Config { get; } = config;

    /// <summary>How long the first bytes may take (the detection timeout).</summary>
    public TimeSpan Timeout { get; } = timeout;

    /// <summary>The mode of a connection to <paramref name="port"/>; an explicit listener's own mode when it has one.</summary>
    public MeshMode ModeFor(int port, MeshMode? listenerMode) => listenerMode ?? Config.ModeFor(port);

    /// <summary>Peeks the connection's first bytes and decides (see the class summary). Strict refusals reset the connection.</summary>
    public async ValueTask<MeshArrival> ArriveAsync(string listener, ConnectionContext connection, Socket socket, MeshMode mode, int port, long deadlineMs)
    {
        var peek = await peeker.PeekAsync(socket, deadlineMs, connection.ConnectionClosed).ConfigureAwait(false);
        var modeName = MeshConfig.Name(mode);
        string arrived;
        switch (peek.Outcome)
        {
            case ClientHelloPeekOutcome.Parsed when peek.MeshProtocol != MeshInnerProtocol.None:
                Count(listener, modeName, "mtls");
                return MeshArrival.Mesh;
            case ClientHelloPeekOutcome.Parsed:
                arrived = "tls";
                break;
            case ClientHelloPeekOutcome.NotTls:
                arrived = "plaintext";
                break;
            case ClientHelloPeekOutcome.TimedOut when peek.BytesPeeked == 0:
                arrived = "silent";
                break;
            case ClientHelloPeekOutcome.TimedOut or ClientHelloPeekOutcome.Invalid:
                // An incomplete or malformed ClientHello: not something mesh TLS would send; in permissive mode the app decides.
                arrived = "tls";
                break;
            default:
                // The client closed or the socket failed before a decision: nothing to forward.
                connection.Abort(new ConnectionAbortedException("The connection closed before its first bytes arrived."));
                return MeshArrival.Closed;
        }

        if (mode == MeshMode.Strict)
        {
            Count(listener, modeName, "refused");
            var what = arrived switch
            {
                "plaintext" => "plaintext",
                "silent" => $"nothing within {Timeout.TotalMilliseconds:0} ms (a server-speaks-first client without mesh mTLS)",
                _ => "TLS that is not mesh mTLS (no mesh ALPN protocol offered)",
            };
            metrics.ConnectFailures.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("service", "passthrough"), new KeyValuePair<string, object?>("cause", "mtls_required"));
            LogRefused(logger, listener, connection.RemoteEndPoint, port, what);
            connection.Abort(new ConnectionAbortedException($"Port {port} requires mesh mTLS."));
            return MeshArrival.Closed;
        }

        Count(listener, modeName, arrived == "silent" ? "plaintext" : arrived);
        return arrived == "silent" ? MeshArrival.Silent : MeshArrival.Other;
    }

    /// <summary>Terminates mesh mTLS (null: the handshake failed or the peer was refused; the connection was reset, counted and logged).</summary>
    public ValueTask<TlsConnection?> TerminateAsync(ConnectionContext connection) => terminator.TerminateAsync(connection, connection.ConnectionClosed);

    /// <summary>The inner protocol of a terminated mesh connection, from the ALPN protocol chosen.</summary>
    public static MeshInnerProtocol InnerProtocol(TlsConnection connection)
        => MeshAlpn.Classify(connection.Info.ApplicationProtocol.Protocol.Span);

    private void Count(string listener, string mode, string result)
        => metrics.MeshInbound.Add(1, new KeyValuePair<string, object?>("listener", listener), new KeyValuePair<string, object?>("mode", mode), new KeyValuePair<string, object?>("result", result));

    [LoggerMessage(EventId = 4401, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} to port {Port} reset: the port is in strict mesh mode and {Arrived} arrived instead of mesh mTLS")]
    private static partial void LogRefused(ILogger logger, string listener, System.Net.EndPoint? client, int port, string arrived);
}

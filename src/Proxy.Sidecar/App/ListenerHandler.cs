using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Core.Detection;
using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Core.Identity;
using Proxy.Core.Metrics;
using Proxy.Core.Tcp;
using Proxy.Http.Authorization;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Tls.Connections;
using Proxy.Tls.Mesh;
using Proxy.Tls.Termination;

namespace Proxy.Sidecar.App;

/// <summary>Which traffic a listener takes, and so how it picks the upstream of each connection.</summary>
internal enum ListenerKind
{
    /// <summary>Captured outbound (iptables OUTPUT): original destination -> a service's endpoints, or passed through.</summary>
    Outbound,

    /// <summary>Captured inbound (iptables PREROUTING): passed through to the original destination (the local app).</summary>
    Inbound,

    /// <summary>An explicit listener the client dials on purpose: every connection goes to one service.</summary>
    Explicit,
}

/// <summary>
/// The HTTP/1.1 stage of a listener: the forwarder and how requests are routed, by destination.
/// <list type="bullet">
/// <item>explicit HTTP listeners: the listener's routes, or all requests to its service (<see cref="ListenerRouting"/>);</item>
/// <item>captured traffic to a service's virtual address: the service's routes, or all requests to the service;</item>
/// <item>captured traffic to any other destination, and inbound traffic: that destination (passthrough).</item>
/// </list>
/// </summary>
/// Routings follow the configuration snapshot (<see cref="ConfigState"/>): each request is routed by the one in force.
internal sealed class HttpStage(Http1Forwarder forwarder, ConfigState state, string listener, Http1Routing? listenerRouting = null, Http2ServerOptions? http2Options = null)
{
    /// <summary>HTTP/2 clients (h2c with prior knowledge): their streams go through <see cref="Forwarder"/> too.</summary>
    public Http2Server Http2 { get; } = new(forwarder, http2Options);

    public Http1Forwarder Forwarder { get; } = forwarder;

    /// <summary>How an explicit listener routes (null on capture listeners).</summary>
    public Http1Routing? ListenerRouting { get; } = listenerRouting;

    public Http1Routing ForService(Service service) => state.FollowService(listener, service);
}

/// <summary>
/// The connection middleware of one listener. Builds, per accepted connection:
/// 1. count it and apply the listener's connection limit (over it: reset, counted as rejected);
/// 2. find the destination: for captured listeners recover the original destination (SO_ORIGINAL_DST), then the
///    service whose virtual address it is, else the destination itself (passthrough; inbound always); for explicit
///    listeners the configured service (or the listener's routes);
/// 3. choose the stage: explicit listeners by their protocol; captured listeners by detecting the protocol, peeking
///    the raw socket (<see cref="ProtocolDetector"/>) unless the destination port is configured opaque. HTTP/1.x goes
///    to the HTTP stage (<see cref="Http1Forwarder"/>: per-request routing, balancing and pooled upstream connections);
///    HTTP/2 with prior knowledge (h2c, detected by its preface) to <see cref="Http2Server"/>, whose streams reach the
///    same forwarder; TLS to a service (captured) or listener (explicit) with SNI routes to the TLS passthrough stage
///    (<see cref="TlsPassthroughStage"/>: peek the ClientHello, pick the service by server name); everything else
///    (TLS without SNI routes, opaque, timed out) and TLS passthrough to the opaque TCP stage (<see cref="TcpProxy"/>),
///    which picks one endpoint for the whole connection. Nothing was consumed by the peeks, so splice stays possible.
/// A connection whose destination cannot be found, or that fails during detection, is reset and logged with the reason.
/// Explicit listeners with <c>tls</c> first terminate TLS (<see cref="TlsTerminator"/>; a failed handshake is counted and
/// the connection reset), then choose by ALPN: h2 to <see cref="Http2Server"/>; http/1.1 or none to the listener's
/// protocol (HTTP/1.1 forwarder, or opaque TCP carrying the decrypted bytes).
/// </summary>
internal sealed partial class ListenerHandler
{
    private const string Passthrough = "passthrough";

    private readonly string _name;
    private readonly ListenerKind _kind;

    // Services, the listener's service and SNI routes: the snapshot in force when a connection arrives (config reload).
    private readonly ConfigState _state;
    private readonly IOriginalDestinationResolver _resolver;
    private readonly TcpProxy _tcp;
    private readonly TcpProxyContext _tcpContext;
    private readonly ConnectionLimiter? _limiter;
    private readonly ProtocolDetector? _detector;
    private readonly HttpStage? _http;
    private readonly bool _explicitHttp;
    private readonly TlsPassthroughStage? _passthrough;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TlsTerminator? _terminator;

    // Authorization of opaque TCP connections (HTTP requests are checked by the forwarder): null when not applied.
    private readonly AuthorizationState? _authorization;
    private readonly Action<ConnectionContext>? _connectionHook;

    // Mesh mTLS termination (inbound capture listener, explicit listeners with "mesh"): null when the mesh is off here.
    private readonly MeshInboundStage? _mesh;
    private readonly MeshMode? _listenerMesh;
    private readonly HttpStage? _meshHttp;

    // Lifecycle: fires when a drain's timeout passes. Opaque TCP watches it, since a spliced socket is out of reach of
    // the transport's abort (the HTTP stages end with the transport).
    private readonly CancellationToken _drainCut;

    public ListenerHandler(
        string name,
        ListenerKind kind,
        ConfigState state,
        IOriginalDestinationResolver resolver,
        TcpProxy tcp,
        TcpProxyContext tcpContext,
        int maxConnections,
        ProxyMetrics metrics,
        ILogger logger,
        ProtocolDetector? detector = null,
        HttpStage? http = null,
        TlsPassthroughStage? passthrough = null,
        TlsTerminator? terminator = null,
        AuthorizationState? authorization = null,
        Action<ConnectionContext>? connectionHook = null,
        MeshInboundStage? mesh = null,
        MeshMode? listenerMesh = null,
        HttpStage? meshHttp = null,
        CancellationToken drainCut = default)
    {
        _drainCut = drainCut;
        _mesh = kind == ListenerKind.Outbound || (kind == ListenerKind.Explicit && listenerMesh is null) ? null : mesh;
        _listenerMesh = listenerMesh;
        _meshHttp = meshHttp ?? http;
        _authorization = authorization;
        _connectionHook = connectionHook;
        _name = name;
        _kind = kind;
        _state = state;
        _resolver = resolver;
        _tcp = tcp;
        _tcpContext = tcpContext;
        _limiter = maxConnections > 0 ? new ConnectionLimiter(maxConnections) : null;
        _detector = kind == ListenerKind.Explicit ? null : detector;
        _http = http;
        _explicitHttp = kind == ListenerKind.Explicit && http?.ListenerRouting is not null;
        _passthrough = passthrough;
        _metrics = metrics;
        _logger = logger;
        _terminator = kind == ListenerKind.Explicit ? terminator : null;
        var view = state.Current.Listeners.GetValueOrDefault(name);
        NeedsSocket = kind != ListenerKind.Explicit || _mesh is not null || !_explicitHttp || (view?.Sni is not null && passthrough is not null);
        if (kind == ListenerKind.Explicit && view?.Service is null && !_explicitHttp && (view?.Sni is null || passthrough is null))
        {
            throw new ArgumentException($"explicit listener {name} needs a service, HTTP routes or SNI routes", nameof(state));
        }
    }

    public string Name => _name;

    /// <summary>
    /// Whether this listener's connections use their socket, not only their pipes: captured listeners (protocol
    /// detection peeks it, the original destination is read from it), mesh mTLS arrival (peeks it), SNI passthrough
    /// (peeks it) and opaque TCP (splice takes it over). The others accept without a .NET socket (cheaper per connection);
    /// one made on first use keeps a later configuration (say, SNI routes added by a reload) correct.
    /// </summary>
    public bool NeedsSocket { get; private set; }

    public async Task HandleAsync(ConnectionContext connection)
    {
        _connectionHook?.Invoke(connection);
        if (_limiter is not null && !_limiter.TryAcquire())
        {
            LogRejected(_logger, _name, connection.RemoteEndPoint, _limiter.Max);
            _limiter.Reject(connection, _metrics, _name);
            return;
        }

        try
        {
            var snapshot = _state.Current;
            if (!TryFindDestination(connection, snapshot, out var destination, out var cause, out var reason))
            {
                _metrics.ConnectFailures.Add(1, new KeyValuePair<string, object?>("listener", _name), new KeyValuePair<string, object?>("service", "unknown"), new KeyValuePair<string, object?>("cause", cause));
                LogUnroutable(_logger, _name, connection.RemoteEndPoint, reason);
                connection.Abort(new ConnectionAbortedException(reason));
                return;
            }

            var tags = ProxyMetrics.Tags(_name, destination.ServiceName);
            _metrics.ConnectionsOpened.Add(1, tags);
            _metrics.ConnectionsActive.Add(1, tags);
            TlsConnection? tls = null;
            try
            {
                // --- mesh mTLS from peer sidecars (inbound, mesh listeners): terminated here; strict refuses the rest ---
                if (_mesh is not null && connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } meshSocket)
                {
                    var port = destination.Port != 0 ? destination.Port : (connection.LocalEndPoint as System.Net.IPEndPoint)?.Port ?? 0;
                    var mode = _mesh.ModeFor(port, _listenerMesh);
                    if (mode != MeshMode.Disable)
                    {
                        var deadline = Environment.TickCount64 + (long)Math.Ceiling(_mesh.Timeout.TotalMilliseconds);
                        switch (await _mesh.ArriveAsync(_name, connection, meshSocket, mode, port, deadline))
                        {
                            case MeshArrival.Closed:
                                return;
                            case MeshArrival.Mesh:
                                tls = await _mesh.TerminateAsync(connection);
                                if (tls is null)
                                {
                                    return;
                                }

                                CountPeer(tls);
                                await HandleMeshAsync(tls, destination);
                                return;
                            case MeshArrival.Silent:
                                // Nothing arrived within the detection timeout: a server-speaks-first client (as detection would decide).
                                await ForwardOpaqueAsync(connection, destination);
                                return;
                        }
                    }
                }

                // --- TLS termination (explicit listeners with tls): the stages below see the decrypted connection ---
                if (_terminator is not null)
                {
                    tls = await _terminator.TerminateAsync(connection, connection.ConnectionClosed);
                    if (tls is null)
                    {
                        return;
                    }

                    CountPeer(tls);
                    await HandleDecryptedAsync(tls, destination);
                    return;
                }

                var useHttp = _explicitHttp;
                var useHttp2 = false;
                SniRouter? sni = null;
                long sniDeadline = 0;

                // --- protocol detection: captured listeners, before the transport starts reading ---
                if (_detector is not null && connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket)
                {
                    // The ClientHello peek (TLS passthrough) shares the detection timeout.
                    sniDeadline = Environment.TickCount64 + (long)Math.Ceiling(_detector.Options.Timeout.TotalMilliseconds);
                    var detection = await _detector.DetectAsync(socket, destination.Port, connection.ConnectionClosed);
                    if (detection.Outcome == DetectionOutcome.Failed)
                    {
                        connection.Abort(new ConnectionAbortedException("The connection failed during protocol detection."));
                        return;
                    }

                    var detected = _http is not null && detection.Outcome == DetectionOutcome.Detected;
                    useHttp = detected && detection.Protocol == Protocol.Http1;
                    useHttp2 = detected && detection.Protocol == Protocol.Http2;
                    if (detection.Outcome == DetectionOutcome.Detected && detection.Protocol == Protocol.Tls && destination.Service is { } dialled)
                    {
                        sni = _passthrough is null ? null : snapshot.ServiceSni.GetValueOrDefault(dialled.Name);
                    }
                }
                else if (_kind == ListenerKind.Explicit && _passthrough is not null && snapshot.Listeners[_name].Sni is { } listenerSni)
                {
                    sni = listenerSni;
                    sniDeadline = Environment.TickCount64 + (long)Math.Ceiling(_passthrough!.Timeout.TotalMilliseconds);
                }
                else if (_explicitHttp)
                {
                    // An explicit HTTP listener serves HTTP/1.x and h2c with prior knowledge: the first bytes tell.
                    useHttp2 = await Http2Server.StartsWithPrefaceAsync(connection.Transport.Input, connection.ConnectionClosed);
                }

                // --- TLS passthrough: route by the ClientHello's SNI (peeked, not consumed), then forward opaque ---
                if (sni is not null)
                {
                    if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is not { } tlsSocket)
                    {
                        Reset(connection, destination.ServiceName, "no_socket", "the connection has no socket to peek its TLS ClientHello from");
                        return;
                    }

                    var decision = await _passthrough!.RouteAsync(_name, tlsSocket, sni, sniDeadline, connection.ConnectionClosed);
                    if (decision.Close)
                    {
                        Reset(connection, destination.ServiceName, decision.Cause!, decision.Reason!);
                        return;
                    }

                    await ForwardOpaqueAsync(connection, destination with { Service = decision.Service, ServiceName = decision.Service!.Name }, decision.ServerName);
                    return;
                }

                if (useHttp || useHttp2)
                {
                    var routing = _explicitHttp ? _http!.ListenerRouting!
                        : destination.Service is { } s ? _http!.ForService(s)
                        : Http1Routing.ForAddress(destination.Address);
                    if (useHttp2)
                    {
                        await _http!.Http2.HandleAsync(connection, routing, connection.ConnectionClosed);
                    }
                    else
                    {
                        await _http!.Forwarder.HandleAsync(connection, routing, connection.ConnectionClosed);
                    }

                    return;
                }

                await ForwardOpaqueAsync(connection, destination);
            }
            finally
            {
                if (tls is not null)
                {
                    await tls.DisposeAsync();
                }

                _metrics.ConnectionsActive.Add(-1, tags);
            }
        }
        finally
        {
            _limiter?.Release();
        }
    }

    /// <summary>
    /// The policies at L4 (peer identity, destination port): a denied connection is closed at once (reset) and logged.
    /// </summary>
    private bool AuthorizeOpaque(ConnectionContext connection, Destination destination)
    {
        if (_authorization is null || _authorization.Current is not { IsEmpty: false } policies)
        {
            return true;
        }

        var port = destination.Port != 0 ? destination.Port : (connection.LocalEndPoint as System.Net.IPEndPoint)?.Port ?? 0;
        var peer = connection.Features.Get<IPeerIdentityFeature>();
        var decision = policies.EvaluateConnection(peer, port);
        _authorization.Record(_name, in decision);
        if (decision.Allowed)
        {
            return true;
        }

        LogDenied(_logger, _name, connection.RemoteEndPoint, peer?.PeerIdentity ?? "(no identity)", port, decision.Policy == AuthorizationPolicies.NoAllowMatched ? "no allow policy matched" : $"denied by policy {decision.Policy}");
        connection.Abort(new ConnectionAbortedException("Denied by an authorization policy."));
        return false;
    }

    private void Reset(ConnectionContext connection, string service, string cause, string reason)
    {
        _metrics.ConnectFailures.Add(1, new KeyValuePair<string, object?>("listener", _name), new KeyValuePair<string, object?>("service", service), new KeyValuePair<string, object?>("cause", cause));
        LogUnroutable(_logger, _name, connection.RemoteEndPoint, reason);
        connection.Abort(new ConnectionAbortedException(reason));
    }

    private void CountPeer(TlsConnection tls)
    {
        if (tls.Features.Get<IPeerIdentityFeature>() is { } peer)
        {
            _metrics.PeerConnections.Add(
                1,
                new KeyValuePair<string, object?>("listener", _name),
                new KeyValuePair<string, object?>("peer", _metrics.PeerLabel(peer.PeerIdentity)),
                new KeyValuePair<string, object?>("transport", peer.Transport == PeerTransport.MutualTls ? "mtls" : "tls"));
        }
    }

    /// <summary>
    /// After mesh termination, by the inner protocol the ALPN chose: HTTP/2 streams to the HTTP/2 server, HTTP/1.1 to the
    /// forwarder (both routed as the listener routes plaintext: the app's address on the inbound listener, the listener's
    /// service or routes on an explicit one), opaque TCP to the TCP stage. Policies see the verified peer identity.
    /// </summary>
    private async Task HandleMeshAsync(TlsConnection connection, Destination destination)
    {
        var inner = MeshInboundStage.InnerProtocol(connection);
        if (inner is MeshInnerProtocol.Http2 or MeshInnerProtocol.Http1 && _meshHttp is { } http)
        {
            var routing = http.ListenerRouting
                ?? (destination.Service is { } service ? http.ForService(service) : Http1Routing.ForAddress(destination.Address));
            if (inner == MeshInnerProtocol.Http2)
            {
                await http.Http2.HandleAsync(connection, routing, connection.ConnectionClosed);
            }
            else
            {
                await http.Forwarder.HandleAsync(connection, routing, connection.ConnectionClosed);
            }

            return;
        }

        await ForwardOpaqueAsync(connection, destination);
    }

    /// <summary>After termination: ALPN h2 to the HTTP/2 server; else the listener's protocol (HTTP/1.1, h2c preface, or opaque).</summary>
    private async Task HandleDecryptedAsync(TlsConnection connection, Destination destination)
    {
        if (_explicitHttp)
        {
            var alpn = connection.Info.ApplicationProtocol;
            var useHttp2 = connection.Info.IsHttp2
                || (alpn == default && await Http2Server.StartsWithPrefaceAsync(connection.Transport.Input, connection.ConnectionClosed));
            var routing = _http!.ListenerRouting!;
            if (useHttp2)
            {
                await _http.Http2.HandleAsync(connection, routing, connection.ConnectionClosed);
            }
            else
            {
                await _http.Forwarder.HandleAsync(connection, routing, connection.ConnectionClosed);
            }

            return;
        }

        await ForwardOpaqueAsync(connection, destination);
    }

    private async Task ForwardOpaqueAsync(ConnectionContext connection, Destination destination, string? serverName = null)
    {
        // Every opaque path (plain, SNI passthrough, after TLS termination) is checked at L4 first.
        if (!AuthorizeOpaque(connection, destination))
        {
            return;
        }

        // Circuit breaking: an opaque connection to a service counts against its maxConnections while it is open.
        var breaker = destination.Service?.Breaker;
        if (breaker is not null && !breaker.TryOpenConnection())
        {
            var reason = breaker.Describe(Proxy.Core.Limits.CircuitBreakerLimit.MaxConnections);
            LogTcpOverflow(_logger, _name, connection.RemoteEndPoint, reason);
            connection.Abort(new ConnectionAbortedException(reason));
            return;
        }

        // One endpoint for the whole connection. The balancer's in-flight count is the endpoint's open
        // connections (least_request); a connection's lifetime says nothing about the endpoint's speed,
        // so no latency sample.
        Proxy.Core.Balancing.Endpoint? endpoint = null;
        if (destination.Service is { } service && !service.TryPick(connection.RemoteEndPoint, out endpoint))
        {
            // Discovery left the service without endpoints: reset, like a failed connect.
            Reset(connection, destination.ServiceName, "no_endpoint", $"listener {_name}: {service.DescribeNoEndpoint()}, so the connection from {connection.RemoteEndPoint} has nowhere to go");
            return;
        }

        var target = endpoint?.Address ?? destination.Address;
        endpoint?.OnRequestStart();
        var outcome = TcpConnectOutcome.Cancelled;
        try
        {
            // A service with TLS origination dials through its own connector.
            var connector = destination.Service?.Upstreams?.Connector;
            var context = destination.ServiceName == _tcpContext.ServiceName && serverName is null && connector is null
                ? _tcpContext
                : _tcpContext with { ServiceName = destination.ServiceName, ServerName = serverName, Connector = connector };
            if (_drainCut.CanBeCanceled)
            {
                using var closedOrCut = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, _drainCut);
                outcome = await _tcp.HandleAsync(connection, target, context, closedOrCut.Token);
            }
            else
            {
                outcome = await _tcp.HandleAsync(connection, target, context, connection.ConnectionClosed);
            }
        }
        finally
        {
            breaker?.ConnectionClosed();
            endpoint?.EndWithoutSample();
            if (endpoint is not null)
            {
                ServiceHealth.ReportConnect(destination.Service, endpoint, outcome);
            }
        }
    }

    /// <summary>
    /// Where a connection goes: a service (balanced per connection or per request), or a fixed address (passthrough);
    /// the port the client dialled (0 for explicit listeners); the service name for metrics and logs.
    /// </summary>
    private readonly record struct Destination(Service? Service, UpstreamAddress Address, int Port, string ServiceName);

    private bool TryFindDestination(ConnectionContext connection, ConfigSnapshot snapshot, out Destination destination, out string cause, out string reason)
    {
        destination = default;
        cause = "";
        reason = "";
        if (_kind == ListenerKind.Explicit)
        {
            var service = snapshot.Listeners[_name].Service;
            destination = new Destination(service, default, 0, service?.Name ?? _name);
            return true;
        }

        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (socket is null)
        {
            cause = "no_original_destination";
            reason = "the connection has no socket to read its original destination from";
            return false;
        }

        if (!_resolver.TryResolve(socket, out var original, out var error))
        {
            cause = "no_original_destination";
            reason = error ?? "no original destination";
            return false;
        }

        if (connection.LocalEndPoint is System.Net.IPEndPoint local && RedirectLoopGuard.IsSelf(original, new ListenAddress(local)))
        {
            cause = "no_original_destination";
            reason = $"the connection was made to the proxy's own port {local} rather than redirected to it; refusing to loop";
            return false;
        }

        if (_kind == ListenerKind.Outbound && snapshot.Services.FindByAddress(original) is { } dialled)
        {
            destination = new Destination(dialled, default, original.EndPoint.Port, dialled.Name);
            return true;
        }

        destination = new Destination(null, new UpstreamAddress(ServiceRegistry.Normalize(original.EndPoint)), original.EndPoint.Port, Passthrough);
        return true;
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} reset: the listener's limit of {Limit} connections is reached")]
    private static partial void LogRejected(ILogger logger, string listener, System.Net.EndPoint? client, long limit);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Listener {Listener}: TCP connection from {Client} (peer {Peer}) to port {Port} closed: {Reason}")]
    private static partial void LogDenied(ILogger logger, string listener, System.Net.EndPoint? client, string peer, int port, string reason);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} reset: {Reason}")]
    private static partial void LogUnroutable(ILogger logger, string listener, System.Net.EndPoint? client, string reason);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} reset: {Reason}, so no upstream connection was opened")]
    private static partial void LogTcpOverflow(ILogger logger, string listener, System.Net.EndPoint? client, string reason);
}

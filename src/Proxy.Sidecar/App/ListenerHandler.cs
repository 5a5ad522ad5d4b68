using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Capture;
using Proxy.Core.Detection;
using Proxy.Core.Discovery;
using Proxy.Core.Metrics;
using Proxy.Core.Tcp;

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
/// The connection middleware of one listener. Builds, per accepted connection:
/// 1. count it and apply the listener's connection limit (over it: reset, counted as rejected);
/// 2. choose the upstream: for captured listeners recover the original destination (SO_ORIGINAL_DST),
///    then a known service's endpoint by its virtual address, else the destination itself (passthrough);
///    for explicit listeners the configured service's next endpoint;
/// 3. captured listeners only: detect the protocol by peeking the raw socket (<see cref="ProtocolDetector"/>),
///    unless the original destination port is configured opaque; nothing is consumed, so splice stays possible;
/// 4. hand the connection to the opaque TCP stage (<see cref="TcpProxy"/>), which connects and forwards.
///    For now every detected protocol goes there; the HTTP/1.1, HTTP/2 and TLS stages will branch off at 3.
/// A connection whose upstream cannot be chosen, or that fails during detection, is reset and logged with the reason.
/// </summary>
internal sealed partial class ListenerHandler
{
    private const string Passthrough = "passthrough";

    private readonly string _name;
    private readonly ListenerKind _kind;
    private readonly Service? _service;
    private readonly ServiceRegistry _services;
    private readonly IOriginalDestinationResolver _resolver;
    private readonly TcpProxy _tcp;
    private readonly TcpProxyContext _tcpContext;
    private readonly ConnectionLimiter? _limiter;
    private readonly ProtocolDetector? _detector;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;

    public ListenerHandler(
        string name,
        ListenerKind kind,
        Service? service,
        ServiceRegistry services,
        IOriginalDestinationResolver resolver,
        TcpProxy tcp,
        TcpProxyContext tcpContext,
        int maxConnections,
        ProxyMetrics metrics,
        ILogger logger,
        ProtocolDetector? detector = null)
    {
        _name = name;
        _kind = kind;
        _service = service;
        _services = services;
        _resolver = resolver;
        _tcp = tcp;
        _tcpContext = tcpContext;
        _limiter = maxConnections > 0 ? new ConnectionLimiter(maxConnections) : null;
        _detector = kind == ListenerKind.Explicit ? null : detector;
        _metrics = metrics;
        _logger = logger;
    }

    public string Name => _name;

    public async Task HandleAsync(ConnectionContext connection)
    {
        if (_limiter is not null && !_limiter.TryAcquire())
        {
            LogRejected(_logger, _name, connection.RemoteEndPoint, _limiter.Max);
            _limiter.Reject(connection, _metrics, _name);
            return;
        }

        try
        {
            if (!TryRoute(connection, out var route, out var cause, out var reason))
            {
                _metrics.ConnectFailures.Add(1, new KeyValuePair<string, object?>("listener", _name), new KeyValuePair<string, object?>("service", "unknown"), new KeyValuePair<string, object?>("cause", cause));
                LogUnroutable(_logger, _name, connection.RemoteEndPoint, reason);
                connection.Abort(new ConnectionAbortedException(reason));
                return;
            }

            var (target, endpoint, destinationPort, serviceName) = route;
            var tags = ProxyMetrics.Tags(_name, serviceName);
            _metrics.ConnectionsOpened.Add(1, tags);
            _metrics.ConnectionsActive.Add(1, tags);

            // The balancer's in-flight count is the endpoint's open connections (least_request); a
            // connection's lifetime says nothing about the endpoint's speed, so no latency sample.
            endpoint?.OnRequestStart();
            try
            {
                // --- protocol detection (issue 3): captured listeners, before the transport starts reading ---
                if (_detector is not null && connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket)
                {
                    var detection = await _detector.DetectAsync(socket, destinationPort, connection.ConnectionClosed);
                    if (detection.Outcome == DetectionOutcome.Failed)
                    {
                        connection.Abort(new ConnectionAbortedException("The connection failed during protocol detection."));
                        return;
                    }
                }

                // --- end of protocol detection ---
                await _tcp.HandleAsync(connection, target, serviceName == _tcpContext.ServiceName ? _tcpContext : _tcpContext with { ServiceName = serviceName }, connection.ConnectionClosed);
            }
            finally
            {
                endpoint?.EndWithoutSample();
                _metrics.ConnectionsActive.Add(-1, tags);
            }
        }
        finally
        {
            _limiter?.Release();
        }
    }

    /// <summary>Where a connection goes: the upstream, the balancer's endpoint (null for passthrough), the port the client dialled, the service.</summary>
    private readonly record struct Route(UpstreamAddress Target, Endpoint? Endpoint, int DestinationPort, string ServiceName);

    private bool TryRoute(ConnectionContext connection, out Route route, out string cause, out string reason)
    {
        route = default;
        cause = "";
        reason = "";
        if (_kind == ListenerKind.Explicit)
        {
            var picked = _service!.Pick(connection.RemoteEndPoint);
            route = new Route(picked.Address, picked, 0, _service.Name);
            return true;
        }

        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (socket is null)
        {
            cause = "no_original_destination";
            reason = "the connection has no socket to read its original destination from";
            return false;
        }

        if (!_resolver.TryResolve(socket, out var destination, out var error))
        {
            cause = "no_original_destination";
            reason = error ?? "no original destination";
            return false;
        }

        if (connection.LocalEndPoint is System.Net.IPEndPoint local && RedirectLoopGuard.IsSelf(destination, new ListenAddress(local)))
        {
            cause = "no_original_destination";
            reason = $"the connection was made to the proxy's own port {local} rather than redirected to it; refusing to loop";
            return false;
        }

        if (_kind == ListenerKind.Outbound && _services.FindByAddress(destination) is { } service)
        {
            var picked = service.Pick(connection.RemoteEndPoint);
            route = new Route(picked.Address, picked, destination.EndPoint.Port, service.Name);
            return true;
        }

        route = new Route(new UpstreamAddress(ServiceRegistry.Normalize(destination.EndPoint)), null, destination.EndPoint.Port, Passthrough);
        return true;
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} reset: the listener's limit of {Limit} connections is reached")]
    private static partial void LogRejected(ILogger logger, string listener, System.Net.EndPoint? client, long limit);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Listener {Listener}: connection from {Client} reset: {Reason}")]
    private static partial void LogUnroutable(ILogger logger, string listener, System.Net.EndPoint? client, string reason);
}

using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tcp;

/// <summary>
/// The opaque TCP (L4) stage: connects to the target and forwards bytes both ways until both sides
/// are done. Whatever no protocol detector claimed ends up here.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Connect to the target through the <see cref="IUpstreamConnector"/>.</item>
/// <item>On failure: count <c>proxy_tcp_connect_failures{cause}</c>, log one sentence naming the destination and
/// the cause, and close the client connection <b>with a reset</b>. Decision: a client must not mistake a
/// failed proxy connect for an empty but clean answer (a FIN would look like "the server said nothing").</item>
/// <item>On success: if splice is wanted (<see cref="TcpProxyContext.SpliceMode"/>), the raw forwarder is
/// supported here and both connections still allow a takeover, hand both sockets to
/// <see cref="IRawSocketForwarder"/>; otherwise forward through the pipes with <see cref="IPipeForwarder"/>.</item>
/// <item>Bytes are counted live (<c>proxy_tcp_bytes_to_upstream/downstream{listener,service}</c>).
/// Opened/active connections and the connection limit belong to the listener code that calls this stage.</item>
/// </list>
/// The downstream connection is left to its owner (Kestrel disposes it when the middleware returns);
/// the upstream connection is disposed here.
/// </remarks>
public sealed partial class TcpProxy
{
    private readonly IUpstreamConnector _connector;
    private readonly IPipeForwarder _pipeForwarder;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;

    public TcpProxy(IUpstreamConnector connector, ProxyMetrics metrics, ILogger<TcpProxy>? logger = null, IPipeForwarder? pipeForwarder = null)
    {
        ArgumentNullException.ThrowIfNull(connector);
        ArgumentNullException.ThrowIfNull(metrics);
        _connector = connector;
        _metrics = metrics;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _pipeForwarder = pipeForwarder ?? new PipeForwarder();
    }

    /// <summary>
    /// Proxies <paramref name="downstream"/> to <paramref name="target"/> until both directions end. Says whether the
    /// connect to the target succeeded (for outlier detection).
    /// </summary>
    public async ValueTask<TcpConnectOutcome> HandleAsync(ConnectionContext downstream, UpstreamAddress target, TcpProxyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(downstream);
        ArgumentNullException.ThrowIfNull(context);

        UpstreamConnectResult connect;
        try
        {
            connect = await (context.Connector ?? _connector).TryConnectAsync(target, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            downstream.Abort(new ConnectionAbortedException("The proxy is shutting down."));
            return TcpConnectOutcome.Cancelled;
        }

        var tags = ProxyMetrics.Tags(context.ListenerName, context.ServiceName);
        if (!connect.IsSuccess)
        {
            var failure = connect.Failure;
            var failureTags = tags;
            failureTags.Add("cause", failure.CauseTag);
            _metrics.ConnectFailures.Add(1, in failureTags);
            Log.ConnectFailed(_logger, context.ListenerName, failure.Destination, context.ServiceName, failure.Reason);
            downstream.Abort(new ConnectionAbortedException(failure.ToString()));
            return TcpConnectOutcome.Failed;
        }

        var upstream = connect.Connection!;
        try
        {
            var observer = new MetricsForwardObserver(_metrics, tags);
            TcpForwardResult result;
            if (context.SpliceMode != SpliceMode.Never && TryTakeOverBoth(downstream, upstream, context, out var downSocket, out var upSocket))
            {
                result = await context.RawForwarder!.ForwardAsync(downSocket, upSocket, context.ForwardOptions, observer, cancellationToken);
            }
            else
            {
                result = await _pipeForwarder.ForwardAsync(downstream.Transport, upstream.Transport, context.ForwardOptions, observer, cancellationToken);
            }

            if (context.ServerName is { } serverName)
            {
                Log.ForwardedTls(_logger, context.ListenerName, context.ServiceName, target, serverName, result.Outcome, result.BytesToUpstream, result.BytesToDownstream);
            }
            else
            {
                Log.Forwarded(_logger, context.ListenerName, context.ServiceName, target, result.Outcome, result.BytesToUpstream, result.BytesToDownstream);
            }
        }
        finally
        {
            await upstream.DisposeAsync();
        }

        return TcpConnectOutcome.Connected;
    }

    private bool TryTakeOverBoth(ConnectionContext downstream, ConnectionContext upstream, TcpProxyContext context, out Socket downSocket, out Socket upSocket)
    {
        downSocket = null!;
        upSocket = null!;
        var down = downstream.Features.Get<ITakeOverSocketFeature>();
        var up = upstream.Features.Get<ITakeOverSocketFeature>();
        if (context.RawForwarder is not { IsSupported: true } || down is not { CanTakeOver: true } || up is not { CanTakeOver: true })
        {
            if (context.SpliceMode == SpliceMode.Always)
            {
                Log.SpliceUnavailable(_logger, context.ListenerName, context.ServiceName);
            }

            return false;
        }

        if (!down.TryTakeOver(out downSocket))
        {
            return false;
        }

        if (!up.TryTakeOver(out upSocket))
        {
            // Someone started the upstream between the check and now: nothing can carry the client's
            // bytes any more (its socket is detached from its pipes), so reset both.
            Log.TakeOverRace(_logger, context.ListenerName, context.ServiceName);
            downSocket.LingerState = new LingerOption(true, 0);
            downSocket.Dispose();
            upstream.Abort();
            throw new InvalidOperationException("The upstream connection was started while the client socket was being taken over.");
        }

        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "{Listener}: connect to {Destination} for service {Service} failed: {Reason}; the client connection was reset")]
        public static partial void ConnectFailed(ILogger logger, string listener, UpstreamAddress destination, string service, string reason);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Debug, Message = "{Listener}: connection to {Destination} for service {Service} ended: {Outcome}, {BytesToUpstream} bytes up, {BytesToDownstream} bytes down")]
        public static partial void Forwarded(ILogger logger, string listener, string service, UpstreamAddress destination, TcpForwardOutcome outcome, long bytesToUpstream, long bytesToDownstream);

        [LoggerMessage(EventId = 1205, Level = LogLevel.Debug, Message = "{Listener}: TLS passthrough connection to {Destination} for service {Service} (SNI {ServerName}) ended: {Outcome}, {BytesToUpstream} bytes up, {BytesToDownstream} bytes down")]
        public static partial void ForwardedTls(ILogger logger, string listener, string service, UpstreamAddress destination, string serverName, TcpForwardOutcome outcome, long bytesToUpstream, long bytesToDownstream);

        [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "{Listener}: splice was required for service {Service} but it is unavailable (no supported splice forwarder, or a socket was already read); forwarding through pipes")]
        public static partial void SpliceUnavailable(ILogger logger, string listener, string service);

        [LoggerMessage(EventId = 1204, Level = LogLevel.Error, Message = "{Listener}: the upstream connection for service {Service} was started during a splice takeover; both connections reset")]
        public static partial void TakeOverRace(ILogger logger, string listener, string service);
    }
}

/// <summary>How the connect of an opaque TCP connection ended.</summary>
public enum TcpConnectOutcome
{
    /// <summary>Connected (whatever happened to the forwarding afterwards).</summary>
    Connected,

    /// <summary>The connect failed (refused, timed out, unreachable, TLS origination...).</summary>
    Failed,

    /// <summary>The proxy stopped before the connect ended.</summary>
    Cancelled,
}

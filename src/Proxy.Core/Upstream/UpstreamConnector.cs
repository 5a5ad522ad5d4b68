using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Core.Transport;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Upstream;

/// <summary>
/// A client-side connection middleware: wraps a freshly connected upstream connection (e.g. TLS
/// origination). Runs in order after the TCP connect. Throwing fails the connect with cause
/// <see cref="ConnectFailureCause.Error"/>.
/// </summary>
public delegate ValueTask<ConnectionContext> ClientConnectionMiddleware(ConnectionContext connection, CancellationToken cancellationToken);

/// <summary>Settings for <see cref="UpstreamConnector"/>.</summary>
public sealed record UpstreamConnectorOptions
{
    /// <summary>Give up on a connect after this long (cause <see cref="ConnectFailureCause.Timeout"/>). Istio's default.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>TCP_NODELAY on upstream sockets (accepted sockets use <see cref="SocketTransportOptions.NoDelay"/>).</summary>
    public bool NoDelay { get; init; } = true;

    /// <summary>Buffers, scheduling and pipe limits of upstream connections (the same knobs as for accepted ones).</summary>
    public SocketTransportOptions Transport { get; init; } = new();

    /// <summary>
    /// Source address bound before connecting to an IPv4 destination (port chosen by the kernel); null lets
    /// the kernel choose. The inbound listener binds 127.0.0.6 so capture rules let its traffic to the
    /// local app through (see Proxy.Core.Capture.InboundPassthrough).
    /// </summary>
    public IPAddress? SourceAddressV4 { get; init; }

    /// <summary>As <see cref="SourceAddressV4"/>, for IPv6 destinations (the inbound listener binds ::6).</summary>
    public IPAddress? SourceAddressV6 { get; init; }

    /// <summary>Client-side middleware applied in order to each new connection (TLS and pooling hook in here later).</summary>
    public IReadOnlyList<ClientConnectionMiddleware> Middleware { get; init; } = [];
}

/// <summary>The result of <see cref="IUpstreamConnector.TryConnectAsync"/>: a connection or a typed failure.</summary>
public readonly struct UpstreamConnectResult
{
    private UpstreamConnectResult(ConnectionContext? connection, ConnectFailure failure)
    {
        Connection = connection;
        Failure = failure;
    }

    /// <summary>The connection (not started: its pipes start on first use, or it can be taken over); null on failure.</summary>
    public ConnectionContext? Connection { get; }

    /// <summary>Meaningful only when <see cref="IsSuccess"/> is false.</summary>
    public ConnectFailure Failure { get; }

    public bool IsSuccess => Connection is not null;

    public static UpstreamConnectResult Success(ConnectionContext connection) => new(connection, default);

    public static UpstreamConnectResult Failed(ConnectFailure failure) => new(null, failure);
}

/// <summary>Opens connections to upstreams. The seam for pools and TLS origination.</summary>
public interface IUpstreamConnector
{
    /// <summary>
    /// Connects to <paramref name="destination"/>. Connect failures are returned, not thrown; only
    /// cancellation through <paramref name="cancellationToken"/> throws.
    /// </summary>
    ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken);
}

/// <summary>
/// Dials upstream TCP connections and returns them as the same <see cref="SocketConnection"/> the
/// listener produces: lazily started (so a stage can take the socket over for splice), half-close aware.
/// </summary>
public sealed partial class UpstreamConnector : IUpstreamConnector, IConnectionFactory, IDisposable
{
    private readonly UpstreamConnectorOptions _options;
    private readonly SocketConnectionSettings _settings;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    public UpstreamConnector(UpstreamConnectorOptions? options = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        _options = options ?? new UpstreamConnectorOptions();
        if (_options.ConnectTimeout <= TimeSpan.Zero && _options.ConnectTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.ConnectTimeout, "ConnectTimeout must be positive or infinite.");
        }

        _settings = new SocketConnectionSettings(_options.Transport, loggerFactory);
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = _settings.Logger;
    }

    public UpstreamConnectorOptions Options => _options;

    /// <inheritdoc/>
    public async ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
    {
        var endPoint = destination.EndPoint;
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        EpollSocket? epoll = null;
        CancellationTokenSource? timeout = null;
        CancellationTokenSource? linked = null;
        try
        {
            socket.NoDelay = _options.NoDelay;
            var source = endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? _options.SourceAddressV6 : _options.SourceAddressV4;
            if (source is not null)
            {
                socket.Bind(new IPEndPoint(source, 0));
            }

            var token = cancellationToken;
            if (_options.ConnectTimeout != Timeout.InfiniteTimeSpan)
            {
                timeout = new CancellationTokenSource(_options.ConnectTimeout, _timeProvider);
                token = timeout.Token;
                if (cancellationToken.CanBeCanceled)
                {
                    linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                    token = linked.Token;
                }
            }

            if (_settings.Loops is { } loops)
            {
                epoll = new EpollSocket(socket);
                await epoll.ConnectAsync(endPoint, loops.Pick(), token);
            }
            else
            {
                await socket.ConnectAsync(endPoint, token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            epoll?.OnClosed();
            return Fail(new ConnectFailure(destination, ConnectFailureCause.Timeout, $"no answer within {_options.ConnectTimeout.TotalMilliseconds:0} ms"));
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            epoll?.OnClosed();
            return Fail(new ConnectFailure(destination, Classify(ex.SocketErrorCode), ex.Message));
        }
        catch
        {
            socket.Dispose();
            epoll?.OnClosed();
            throw;
        }
        finally
        {
            linked?.Dispose();
            timeout?.Dispose();
        }

        ConnectionContext connection = new SocketConnection(socket, _settings, epoll, endPoint);
        foreach (var middleware in _options.Middleware)
        {
            try
            {
                connection = await middleware(connection, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                connection.Abort();
                await connection.DisposeAsync();
                return Fail(new ConnectFailure(destination, ConnectFailureCause.Error, ex.Message));
            }
        }

        return UpstreamConnectResult.Success(connection);
    }

    /// <summary>
    /// <see cref="IConnectionFactory"/> shape: connects to an <see cref="IPEndPoint"/> or throws
    /// <see cref="UpstreamConnectException"/> carrying the <see cref="ConnectFailure"/>.
    /// </summary>
    public async ValueTask<ConnectionContext> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip)
        {
            throw new NotSupportedException($"Only IP endpoints can be dialled, not {endpoint.GetType().Name}.");
        }

        var result = await TryConnectAsync(new UpstreamAddress(ip), cancellationToken);
        return result.Connection ?? throw new UpstreamConnectException(result.Failure);
    }

    public void Dispose() => _settings.Dispose();

    internal static ConnectFailureCause Classify(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => ConnectFailureCause.Refused,
        SocketError.TimedOut => ConnectFailureCause.Timeout,
        SocketError.NetworkUnreachable or SocketError.HostUnreachable or SocketError.HostDown or SocketError.NetworkDown => ConnectFailureCause.Unreachable,
        _ => ConnectFailureCause.Error,
    };

    private UpstreamConnectResult Fail(ConnectFailure failure)
    {
        Log.ConnectFailed(_logger, failure.Destination, failure.CauseTag, failure.Detail);
        return UpstreamConnectResult.Failed(failure);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Debug, Message = "Connect to {Destination} failed ({Cause}): {Detail}")]
        public static partial void ConnectFailed(ILogger logger, UpstreamAddress destination, string cause, string detail);
    }
}

using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;

namespace Proxy.Core.Limits;

/// <summary>
/// Wraps the connector of a connection pool so that connections to a service's endpoints count against the
/// service's <c>maxConnections</c>: over the limit <see cref="TryConnectAsync"/> fails at once with
/// <see cref="ConnectFailureCause.Overflow"/> (nothing is dialled; the HTTP/2 pools), while <see cref="UpstreamPool"/>
/// takes the slot itself and waits for one at the limit (<see cref="ConnectHoldingSlotAsync"/>); a connection made is counted until it is
/// disposed (the pools dispose every connection they close). The service is found by the endpoint address
/// (<paramref name="breakerFor"/>); addresses of no service with circuit breakers pass through uncounted.
/// </summary>
/// <remarks>
/// Only for pools: a counted connection is a thin wrapper without the socket take-over feature, so it cannot be
/// spliced. Opaque TCP connections are counted by the listener around the TCP stage instead.
/// </remarks>
public sealed class CircuitBreakingConnector(IUpstreamConnector inner, Func<UpstreamAddress, CircuitBreaker?> breakerFor) : IUpstreamConnector
{
    public ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
    {
        if (breakerFor(destination) is not { } breaker)
        {
            return inner.TryConnectAsync(destination, cancellationToken);
        }

        if (!breaker.TryOpenConnection())
        {
            return new ValueTask<UpstreamConnectResult>(UpstreamConnectResult.Failed(
                new ConnectFailure(destination, ConnectFailureCause.Overflow, breaker.Describe(CircuitBreakerLimit.MaxConnections))));
        }

        return ConnectHoldingSlotAsync(destination, breaker, cancellationToken);
    }

    /// <summary>The circuit breaker <paramref name="destination"/> counts against now (null: none).</summary>
    public CircuitBreaker? BreakerFor(UpstreamAddress destination) => breakerFor(destination);

    /// <summary>
    /// Connects with a <c>maxConnections</c> slot of <paramref name="breaker"/> the caller already holds
    /// (<see cref="CircuitBreaker.TryTakeConnectionSlot"/> or a granted wait): the connection made keeps it until
    /// disposed, a failed connect gives it back. Without a breaker the connection is not counted.
    /// </summary>
    public async ValueTask<UpstreamConnectResult> ConnectHoldingSlotAsync(UpstreamAddress destination, CircuitBreaker? breaker, CancellationToken cancellationToken)
    {
        if (breaker is null)
        {
            return await inner.TryConnectAsync(destination, cancellationToken).ConfigureAwait(false);
        }

        UpstreamConnectResult result;
        try
        {
            result = await inner.TryConnectAsync(destination, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            breaker.ConnectionClosed();
            throw;
        }

        if (!result.IsSuccess)
        {
            breaker.ConnectionClosed();
            return result;
        }

        return UpstreamConnectResult.Success(new CountedConnection(result.Connection!, breaker));
    }

    /// <summary>An upstream connection that gives its <c>maxConnections</c> slot back once, when disposed.</summary>
    private sealed class CountedConnection(ConnectionContext inner, CircuitBreaker breaker) : ConnectionContext
    {
        private int _released;

        public override string ConnectionId
        {
            get => inner.ConnectionId;
            set => inner.ConnectionId = value;
        }

        public override IFeatureCollection Features => inner.Features;

        public override IDictionary<object, object?> Items
        {
            get => inner.Items;
            set => inner.Items = value;
        }

        public override IDuplexPipe Transport
        {
            get => inner.Transport;
            set => inner.Transport = value;
        }

        public override CancellationToken ConnectionClosed
        {
            get => inner.ConnectionClosed;
            set => inner.ConnectionClosed = value;
        }

        public override EndPoint? LocalEndPoint
        {
            get => inner.LocalEndPoint;
            set => inner.LocalEndPoint = value;
        }

        public override EndPoint? RemoteEndPoint
        {
            get => inner.RemoteEndPoint;
            set => inner.RemoteEndPoint = value;
        }

        public override void Abort() => inner.Abort();

        public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

        public override async ValueTask DisposeAsync()
        {
            try
            {
                await inner.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                if (Interlocked.Exchange(ref _released, 1) == 0)
                {
                    breaker.ConnectionClosed();
                }
            }

            await base.DisposeAsync().ConfigureAwait(false);
        }
    }
}

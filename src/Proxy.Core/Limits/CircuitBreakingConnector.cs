using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;

namespace Proxy.Core.Limits;

/// <summary>
/// Wraps the connector of a connection pool so that connections to a service's endpoints count against the
/// service's <c>maxConnections</c>: over the limit the connect fails at once with
/// <see cref="ConnectFailureCause.Overflow"/> (nothing is dialled); a connection made is counted until it is
/// disposed (the pools dispose every connection they close). The service is found by the endpoint address
/// (<paramref name="breakerFor"/>); addresses of no service with circuit breakers pass through uncounted.
/// </summary>
/// <remarks>
/// Only for pools: a counted connection is a thin wrapper without the socket take-over feature, so it cannot be
/// spliced. Opaque TCP connections are counted by the listener around the TCP stage instead.
/// </remarks>
public sealed class CircuitBreakingConnector(IUpstreamConnector inner, Func<UpstreamAddress, CircuitBreaker?> breakerFor) : IUpstreamConnector
{
    public async ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
    {
        if (breakerFor(destination) is not { } breaker)
        {
            return await inner.TryConnectAsync(destination, cancellationToken).ConfigureAwait(false);
        }

        if (!breaker.TryOpenConnection())
        {
            return UpstreamConnectResult.Failed(new ConnectFailure(destination, ConnectFailureCause.Overflow, breaker.Describe(CircuitBreakerLimit.MaxConnections)));
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

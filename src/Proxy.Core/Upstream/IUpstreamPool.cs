using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;

namespace Proxy.Core.Upstream;

/// <summary>
/// Keep-alive connections to upstream endpoints, one pool per endpoint address, shared by every downstream
/// connection of a listener (one pool set per connector, because the connector decides the source address).
/// <para>
/// Contract: every successful <see cref="RentAsync"/> is matched by exactly one <see cref="Return"/>. The renter
/// owns the connection in between (reads and writes its pipes). <c>Return(c, reusable: true)</c> only when the
/// exchange ended cleanly at a message boundary (response fully read, request fully written, neither side
/// asked to close); otherwise <c>reusable: false</c> and the pool disposes the connection.
/// </para>
/// </summary>
public interface IUpstreamPool
{
    /// <summary>
    /// An idle connection to <paramref name="address"/> if a healthy one is kept (<see cref="PooledConnection.IsReused"/>
    /// true), else a new one. Idle connections that the upstream closed, or that hold unexpected bytes, are
    /// discarded on the way. Fails (never throws for network causes) when connecting fails or the endpoint's
    /// connection limit is reached and none comes back within the connect timeout.
    /// </summary>
    ValueTask<PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken);

    /// <summary>Gives a rented connection back: kept idle when <paramref name="reusable"/>, else closed.</summary>
    void Return(PooledConnection connection, bool reusable);
}

/// <summary>
/// A pool that can give up an endpoint that left service discovery: its idle connections are closed at once, connections
/// in use are closed when their exchange ends (not kept idle), and a later rent for the same address (it came back)
/// starts afresh.
/// </summary>
public interface IEndpointRetirement
{
    void Retire(UpstreamAddress address);
}

/// <summary>A connection rented from an <see cref="IUpstreamPool"/>.</summary>
public sealed class PooledConnection(UpstreamAddress address, ConnectionContext connection)
{
    public UpstreamAddress Address { get; } = address;

    public ConnectionContext Connection { get; } = connection;

    /// <summary>True when this rent took the connection from the idle list (it carried an earlier exchange).</summary>
    public bool IsReused { get; set; }

    /// <summary>Exchanges this connection has carried before the current rent.</summary>
    public int UseCount { get; set; }

    /// <summary>Timestamp (<see cref="TimeProvider.GetTimestamp"/>) when it was last returned idle.</summary>
    public long IdleSince { get; set; }

    /// <summary>The pool's per-endpoint state this connection counts in (so a return after the endpoint was retired finds it).</summary>
    internal object? PoolEntry { get; set; }

    /// <summary>The circuit breaker whose <c>maxConnections</c> this connection counts in (null: none).</summary>
    internal Limits.CircuitBreaker? Breaker { get; init; }
}

/// <summary>The outcome of <see cref="IUpstreamPool.RentAsync"/>: a connection, or why there is none.</summary>
public readonly struct PoolRentResult
{
    private PoolRentResult(PooledConnection? connection, ConnectFailure failure)
    {
        Connection = connection;
        Failure = failure;
    }

    public PooledConnection? Connection { get; }

    /// <summary>Why no connection could be had (cause <see cref="ConnectFailureCause"/>); default on success.</summary>
    public ConnectFailure Failure { get; }

    public bool IsSuccess => Connection is not null;

    public static PoolRentResult Success(PooledConnection connection) => new(connection, default);

    public static PoolRentResult Failed(ConnectFailure failure) => new(null, failure);
}

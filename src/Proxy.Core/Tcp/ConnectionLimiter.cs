using System.Diagnostics;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Metrics;

namespace Proxy.Core.Tcp;

/// <summary>
/// Counts open connections against a maximum. <see cref="TryAcquire"/> before handling a connection,
/// <see cref="Release"/> exactly once after it; over the limit, <see cref="Reject"/> resets the connection
/// and counts it. Lock-free.
/// </summary>
public sealed class ConnectionLimiter
{
    private long _current;

    public ConnectionLimiter(long max)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        Max = max;
    }

    public long Max { get; }

    /// <summary>Connections currently holding a slot.</summary>
    public long Current => Volatile.Read(ref _current);

    /// <summary>Takes a slot; false if <see cref="Max"/> are already taken.</summary>
    public bool TryAcquire()
    {
        var current = Volatile.Read(ref _current);
        while (current < Max)
        {
            var seen = Interlocked.CompareExchange(ref _current, current + 1, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }

        return false;
    }

    /// <summary>Gives back a slot taken by a successful <see cref="TryAcquire"/>.</summary>
    public void Release()
    {
        var now = Interlocked.Decrement(ref _current);
        if (now < 0)
        {
            Interlocked.Increment(ref _current);
            throw new InvalidOperationException("Release without a matching TryAcquire.");
        }
    }

    /// <summary>
    /// Closes a connection that found no slot with a reset (a client must not mistake it for a clean,
    /// empty answer) and counts it in <c>proxy_tcp_connections_rejected{listener, limit="max_connections"}</c>.
    /// </summary>
    public void Reject(ConnectionContext connection, ProxyMetrics metrics, string listenerName)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(metrics);
        var tags = new TagList { { "listener", listenerName }, { "limit", "max_connections" } };
        metrics.ConnectionsRejected.Add(1, in tags);
        connection.Abort(new ConnectionAbortedException($"Listener {listenerName} is at its limit of {Max} connections."));
    }
}

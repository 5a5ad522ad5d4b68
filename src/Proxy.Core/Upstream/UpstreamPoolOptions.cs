namespace Proxy.Core.Upstream;

/// <summary>Limits and timers of an <see cref="UpstreamPool"/>; every limit applies per endpoint address.</summary>
public sealed record UpstreamPoolOptions
{
    /// <summary>
    /// Connections open to one endpoint at most (in use, idle and being connected together); 0 = unlimited.
    /// A rent at the limit waits (first come, first served) for a connection to come back.
    /// </summary>
    public int MaxConnectionsPerEndpoint { get; init; }

    /// <summary>Idle connections kept per endpoint; a return beyond that closes the oldest idle one. 0 keeps none.</summary>
    public int MaxIdlePerEndpoint { get; init; } = 1024;

    /// <summary>An idle connection unused this long is closed (by the sweep, or when a rent finds it). Infinite keeps them.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long a rent waits for a free slot when the endpoint is at <see cref="MaxConnectionsPerEndpoint"/> before it
    /// fails with <see cref="ConnectFailureCause.PoolExhausted"/>. Null: the connector's connect timeout
    /// (<see cref="UpstreamConnectorOptions.ConnectTimeout"/>, 10 s when the connector is not an <see cref="UpstreamConnector"/>).
    /// Zero fails at once.
    /// </summary>
    public TimeSpan? WaitTimeout { get; init; }

    /// <summary>
    /// How long closing a discarded connection gracefully (pending output sent, then FIN) may take before it is reset
    /// instead: an upstream that stopped reading would otherwise hold the socket forever. Infinite waits.
    /// </summary>
    public TimeSpan CloseTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The clock for idle stamps, the idle sweep, wait and close timeouts.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Throws one <see cref="ArgumentException"/> naming every invalid setting.</summary>
    internal void Validate()
    {
        List<string>? errors = null;
        if (MaxConnectionsPerEndpoint < 0)
        {
            (errors ??= []).Add($"{nameof(MaxConnectionsPerEndpoint)} must be 0 (unlimited) or positive, not {MaxConnectionsPerEndpoint}.");
        }

        if (MaxIdlePerEndpoint < 0)
        {
            (errors ??= []).Add($"{nameof(MaxIdlePerEndpoint)} must be 0 or positive, not {MaxIdlePerEndpoint}.");
        }

        if (IdleTimeout <= TimeSpan.Zero && IdleTimeout != Timeout.InfiniteTimeSpan)
        {
            (errors ??= []).Add($"{nameof(IdleTimeout)} must be positive or infinite, not {IdleTimeout}.");
        }

        if (WaitTimeout is { } wait && wait < TimeSpan.Zero && wait != Timeout.InfiniteTimeSpan)
        {
            (errors ??= []).Add($"{nameof(WaitTimeout)} must be zero, positive or infinite, not {wait}.");
        }

        if (CloseTimeout <= TimeSpan.Zero && CloseTimeout != Timeout.InfiniteTimeSpan)
        {
            (errors ??= []).Add($"{nameof(CloseTimeout)} must be positive or infinite, not {CloseTimeout}.");
        }

        if (TimeProvider is null)
        {
            (errors ??= []).Add($"{nameof(TimeProvider)} must not be null.");
        }

        if (errors is not null)
        {
            throw new ArgumentException("Invalid upstream pool options: " + string.Join(" ", errors), "options");
        }
    }
}

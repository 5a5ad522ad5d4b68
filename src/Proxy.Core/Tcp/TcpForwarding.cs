using System.IO.Pipelines;
using System.Net.Sockets;

namespace Proxy.Core.Tcp;

/// <summary>Tuning for one opaque TCP forwarding session.</summary>
public sealed record TcpForwardOptions
{
    /// <summary>Close both sides when no byte moved in either direction for this long. Infinite disables.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromHours(1);
}

/// <summary>How a forwarding session ended.</summary>
public enum TcpForwardOutcome
{
    /// <summary>Both directions ended with FIN (half-closes propagated).</summary>
    Completed,
    /// <summary>The client reset its connection; the reset was propagated to the upstream.</summary>
    DownstreamReset,
    /// <summary>The upstream reset its connection; the reset was propagated to the client.</summary>
    UpstreamReset,
    /// <summary>No byte moved for <see cref="TcpForwardOptions.IdleTimeout"/>; both sides were closed.</summary>
    IdleTimeout,
    /// <summary>The proxy aborted the session (shutdown, cancellation).</summary>
    Aborted,
}

public readonly record struct TcpForwardResult(TcpForwardOutcome Outcome, long BytesToUpstream, long BytesToDownstream);

/// <summary>Told about bytes as they move, so live metrics see long-lived connections. Called per chunk, never per byte.</summary>
public interface IForwardObserver
{
    void OnBytesToUpstream(int count);
    void OnBytesToDownstream(int count);
}

/// <summary>Forwards between two connections exposed as pipes (the portable path).</summary>
public interface IPipeForwarder
{
    ValueTask<TcpForwardResult> ForwardAsync(IDuplexPipe downstream, IDuplexPipe upstream, TcpForwardOptions options, IForwardObserver? observer, CancellationToken cancellationToken);
}

/// <summary>
/// Forwards between two raw sockets that no transport has read from (e.g. splice(2) on Linux).
/// The forwarder owns both sockets for the session and closes them when it ends: FIN is propagated
/// per direction, a reset on one side becomes a reset on the other.
/// </summary>
public interface IRawSocketForwarder
{
    /// <summary>Whether this forwarder can run on this machine (kernel, OS).</summary>
    bool IsSupported { get; }

    ValueTask<TcpForwardResult> ForwardAsync(Socket downstream, Socket upstream, TcpForwardOptions options, IForwardObserver? observer, CancellationToken cancellationToken);
}

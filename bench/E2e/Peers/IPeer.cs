using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>What a peer proxies: opaque TCP, HTTP/1.1, or HTTP/2 cleartext from clients (h2c, prior knowledge; HTTP/1.1 upstream).</summary>
internal enum ProxyProtocol
{
    Tcp,
    Http1,
    Http2,
}

/// <summary>
/// How a peer is configured for one scenario: protocol and the single upstream it forwards to;
/// <paramref name="Http2Upstream"/>: the upstream speaks h2c (prior knowledge) and the peer forwards over HTTP/2.
/// </summary>
internal sealed record PeerConfig(ProxyProtocol Protocol, IPEndPoint Upstream, bool Http2Upstream = false);

/// <summary>
/// A proxy under comparison (or "direct", no proxy at all). A peer can be launched, stopped and launched
/// again (start-up timing does that). Readiness is whatever the peer offers (an HTTP endpoint that answers 200
/// once its listeners are bound).
/// </summary>
internal interface IPeer : IAsyncDisposable
{
    /// <summary>Short stable id used in options and tables, e.g. "haproxy", "sidecar-aot".</summary>
    string Name { get; }

    /// <summary>One line for the report: version, mode and tuning.</summary>
    string Description { get; }

    /// <summary>The running process, or null for "direct" (and before launch / after stop).</summary>
    ChildProcess? Process { get; }

    /// <summary>Where clients connect; valid after <see cref="Launch"/>.</summary>
    IPEndPoint ListenEndPoint { get; }

    /// <summary>Writes the peer's configuration and starts it; returns without waiting for readiness.</summary>
    void Launch(PeerConfig config);

    /// <summary>Waits until the peer is ready; returns the time from process creation to ready (zero for "direct").</summary>
    Task<TimeSpan> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>Kills the process and waits for it; safe to call when not running.</summary>
    Task StopAsync();
}

internal static class PeerExtensions
{
    public static async Task<TimeSpan> StartAsync(this IPeer peer, PeerConfig config, TimeSpan timeout, CancellationToken cancellationToken)
    {
        peer.Launch(config);
        try
        {
            return await peer.WaitReadyAsync(timeout, cancellationToken);
        }
        catch
        {
            await peer.StopAsync();
            throw;
        }
    }
}

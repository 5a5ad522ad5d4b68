using System.Net.Sockets;
using Proxy.Core.Addresses;

namespace Proxy.Core.Capture;

/// <summary>
/// Recovers the destination a captured connection was originally sent to. The seam between the proxy
/// and iptables: production uses SO_ORIGINAL_DST, most tests use a fixed resolver and need no root.
/// </summary>
public interface IOriginalDestinationResolver
{
    /// <summary>
    /// Returns the original destination of an accepted socket, or false with a one-sentence reason
    /// (e.g. "no NAT entry: the connection was not redirected by iptables"). Never throws for a
    /// per-connection failure.
    /// </summary>
    bool TryResolve(Socket accepted, out OriginalDestination destination, out string? error);
}

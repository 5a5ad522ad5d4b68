using System.Net;
using Proxy.Core.Addresses;

namespace Proxy.Core.Capture;

/// <summary>
/// Detects connections sent straight to a capture listener. Conntrack reports the listener's own address
/// as the "original destination" of a connection that was not redirected; forwarding it would connect
/// the proxy to itself, again and again. The caller refuses such a connection.
/// </summary>
public static class RedirectLoopGuard
{
    /// <summary>
    /// True when <paramref name="destination"/> is the listener itself. Pass the accepted socket's local
    /// endpoint as <paramref name="listener"/>. IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
    /// If <paramref name="listener"/> is a wildcard (0.0.0.0 or ::), a destination on the same port that is
    /// a loopback or unspecified address also counts as self.
    /// </summary>
    public static bool IsSelf(OriginalDestination destination, ListenAddress listener)
    {
        var dst = destination.EndPoint;
        var local = listener.EndPoint;
        if (dst.Port != local.Port)
        {
            return false;
        }

        var dstAddress = Normalize(dst.Address);
        var localAddress = Normalize(local.Address);
        if (dstAddress.Equals(localAddress))
        {
            return true;
        }

        if (localAddress.Equals(IPAddress.Any) || localAddress.Equals(IPAddress.IPv6Any))
        {
            return IPAddress.IsLoopback(dstAddress) || dstAddress.Equals(IPAddress.Any) || dstAddress.Equals(IPAddress.IPv6Any);
        }

        return false;
    }

    private static IPAddress Normalize(IPAddress address) =>
        address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}

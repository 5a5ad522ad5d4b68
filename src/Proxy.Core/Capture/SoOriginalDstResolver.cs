using System.Net.Sockets;
using System.Runtime.InteropServices;
using Proxy.Core.Addresses;

namespace Proxy.Core.Capture;

/// <summary>
/// Reads the pre-NAT destination of a connection captured by an iptables REDIRECT rule:
/// <c>getsockopt(fd, SOL_IP, SO_ORIGINAL_DST)</c> for IPv4, <c>getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST)</c>
/// for IPv6. A connection accepted on a dual-stack <c>[::]</c> listener from an IPv4 client is an IPv4
/// connection to conntrack, so it is asked with the IPv4 option.
/// </summary>
/// <remarks>
/// Conntrack also answers for connections that were tracked but not rewritten (it then returns the
/// listener's own address): callers must refuse those with <see cref="RedirectLoopGuard.IsSelf"/>.
/// On success this allocates only the returned endpoint; it never throws for a per-connection failure.
/// </remarks>
public sealed class SoOriginalDstResolver : IOriginalDestinationResolver
{
    /// <summary>The error for ENOENT (conntrack knows the connection but did not NAT it, or does not track it).</summary>
    public const string NoNatEntryError = "no original destination: the connection was not redirected by iptables (no NAT entry)";

    /// <summary>A shared instance; the resolver has no state.</summary>
    public static SoOriginalDstResolver Instance { get; } = new();

    public bool TryResolve(Socket accepted, out OriginalDestination destination, out string? error)
    {
        destination = default;
        if (!OperatingSystem.IsLinux())
        {
            error = "no original destination: SO_ORIGINAL_DST is only available on Linux";
            return false;
        }

        var family = accepted.AddressFamily;
        if (family != AddressFamily.InterNetwork && family != AddressFamily.InterNetworkV6)
        {
            error = $"no original destination: the socket's address family is {family}, not IPv4 or IPv6";
            return false;
        }

        try
        {
            return TryResolveCore(accepted.SafeHandle, family, out destination, out error);
        }
        catch (ObjectDisposedException)
        {
            error = "no original destination: the socket was closed before its original destination was read";
            return false;
        }
    }

    private static unsafe bool TryResolveCore(SafeSocketHandle handle, AddressFamily family, out OriginalDestination destination, out string? error)
    {
        destination = default;
        var useIpv4 = family == AddressFamily.InterNetwork || IsIpv4MappedLocal(handle);
        var level = useIpv4 ? CaptureInterop.SolIp : CaptureInterop.SolIpv6;

        // Large enough for sockaddr_in6; stack scratch, no allocation.
        byte* buffer = stackalloc byte[OriginalDestinationParser.SockaddrIn6Length];
        var length = (uint)OriginalDestinationParser.SockaddrIn6Length;
        if (CaptureInterop.GetSockOpt(handle, level, CaptureInterop.SoOriginalDst, buffer, ref length) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            error = errno == CaptureInterop.ErrorNoEntry ? NoNatEntryError : ErrnoSentence(useIpv4, errno);
            return false;
        }

        var sockaddr = new ReadOnlySpan<byte>(buffer, (int)Math.Min(length, (uint)OriginalDestinationParser.SockaddrIn6Length));
        if (!OriginalDestinationParser.TryParse(sockaddr, out var endPoint))
        {
            error = $"no original destination: getsockopt({(useIpv4 ? "SOL_IP" : "SOL_IPV6")}, SO_ORIGINAL_DST) returned {length} bytes that are not an IPv4 or IPv6 socket address";
            return false;
        }

        destination = new OriginalDestination(endPoint);
        error = null;
        return true;
    }

    /// <summary>True when an AF_INET6 socket carries an IPv4 connection (local address ::ffff:a.b.c.d).</summary>
    private static unsafe bool IsIpv4MappedLocal(SafeSocketHandle handle)
    {
        byte* buffer = stackalloc byte[OriginalDestinationParser.SockaddrIn6Length];
        var length = (uint)OriginalDestinationParser.SockaddrIn6Length;
        if (CaptureInterop.GetSockName(handle, buffer, ref length) != 0 || length < OriginalDestinationParser.SockaddrIn6Length)
        {
            // Let getsockopt report the real problem with the IPv6 option.
            return false;
        }

        var address = new ReadOnlySpan<byte>(buffer + 8, 16);
        return address[..10].IndexOfAnyExcept((byte)0) < 0 && address[10] == 0xff && address[11] == 0xff;
    }

    private static string ErrnoSentence(bool ipv4, int errno) =>
        $"no original destination: getsockopt({(ipv4 ? "SOL_IP, SO_ORIGINAL_DST" : "SOL_IPV6, IP6T_SO_ORIGINAL_DST")}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})";
}

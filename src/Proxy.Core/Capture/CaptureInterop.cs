using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Proxy.Core.Capture;

/// <summary>The few libc calls transparent capture needs (Linux only; source-generated, AOT-safe).</summary>
internal static unsafe partial class CaptureInterop
{
    /// <summary>SOL_IP.</summary>
    public const int SolIp = 0;

    /// <summary>SOL_IPV6.</summary>
    public const int SolIpv6 = 41;

    /// <summary>SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h): both 80.</summary>
    public const int SoOriginalDst = 80;

    /// <summary>ENOENT: conntrack has no entry for the connection.</summary>
    public const int ErrorNoEntry = 2;

    // "libc" is mapped by the runtime to the platform C library (libc.so.6 on glibc).
    [LibraryImport("libc", EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(SafeSocketHandle socket, int level, int optionName, byte* optionValue, ref uint optionLength);

    [LibraryImport("libc", EntryPoint = "getsockname", SetLastError = true)]
    public static partial int GetSockName(SafeSocketHandle socket, byte* address, ref uint addressLength);
}

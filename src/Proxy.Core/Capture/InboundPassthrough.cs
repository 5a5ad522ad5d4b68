using System.Net;
using System.Net.Sockets;

namespace Proxy.Core.Capture;

/// <summary>
/// The source addresses the inbound listener binds when it connects to the local application on the pod's
/// own address. The capture rules (<c>sidecar iptables</c>) let connections from these addresses leave via
/// lo untouched; any other connection from the proxy's uid to a local non-loopback address is sent to the
/// inbound listener again (the proxy hairpin), so an inbound forward that dials the pod address without
/// binding one of these, or 127.0.0.1 / ::1 instead, loops.
/// </summary>
/// <remarks>
/// 127.0.0.6 works as is (all of 127.0.0.0/8 is local). ::6 must first be added to lo
/// (<c>ip -6 addr add ::6/128 dev lo</c>); otherwise dial ::1 for IPv6.
/// </remarks>
public static class InboundPassthrough
{
    /// <summary>127.0.0.6.</summary>
    public static IPAddress SourceV4 { get; } = IPAddress.Parse("127.0.0.6");

    /// <summary>::6.</summary>
    public static IPAddress SourceV6 { get; } = IPAddress.Parse("::6");

    /// <summary>The passthrough source for a destination of <paramref name="family"/>.</summary>
    public static IPAddress SourceFor(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? SourceV6 : SourceV4;
}

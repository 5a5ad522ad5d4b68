using System.Net;
using System.Net.Sockets;
using Proxy.Core.Capture;

namespace Proxy.Core.Tests.Capture;

// The success path needs iptables and a network namespace: see tests/Proxy.Sidecar.Tests/Capture.
// These tests cover the failure paths, which must answer with a sentence and never throw.
public sealed class SoOriginalDstResolverTests
{
    [Fact]
    public void TryResolve_SocketWithoutNatEntry_ReturnsNoNatEntryError()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();

        var ok = SoOriginalDstResolver.Instance.TryResolve(listener, out var destination, out var error);

        Assert.False(ok);
        Assert.Equal(default, destination);
        Assert.Equal("no original destination: the connection was not redirected by iptables (no NAT entry)", error);
    }

    [Fact]
    public void TryResolve_Ipv6SocketWithoutNatEntry_ReturnsNoNatEntryError()
    {
        using var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        listener.Listen();

        Assert.False(SoOriginalDstResolver.Instance.TryResolve(listener, out _, out var error));
        Assert.Equal(SoOriginalDstResolver.NoNatEntryError, error);
    }

    [Fact]
    public void TryResolve_UdpSocket_ReturnsSentenceNamingErrno()
    {
        // Conntrack answers SO_ORIGINAL_DST only for TCP and SCTP: ENOPROTOOPT (92) for UDP.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        Assert.False(SoOriginalDstResolver.Instance.TryResolve(socket, out _, out var error));
        Assert.StartsWith("no original destination: getsockopt(SOL_IP, SO_ORIGINAL_DST) failed with errno 92 (", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryResolve_UnixSocket_ReturnsFamilyError()
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        Assert.False(SoOriginalDstResolver.Instance.TryResolve(socket, out _, out var error));
        Assert.Equal("no original destination: the socket's address family is Unix, not IPv4 or IPv6", error);
    }

    [Fact]
    public void TryResolve_DisposedSocket_ReturnsFalseWithoutThrowing()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Dispose();

        Assert.False(SoOriginalDstResolver.Instance.TryResolve(socket, out _, out var error));
        Assert.NotNull(error);
        Assert.StartsWith("no original destination: ", error, StringComparison.Ordinal);
    }
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Proxy.Testing;

/// <summary>
/// A loopback port that refuses connections for the rest of the test run: bound, never listening, never released.
/// A port bound and then released can be taken again at once, as a listener by a parallel test or as the source port
/// of an outbound connection; a connect to it then succeeds (a TCP self-connect when the proxy's own connection picks
/// it) and the test sees a timeout or a garbled response instead of a refusal. A port that stays bound is skipped by
/// the kernel for both, and a SYN to a bound socket that does not listen is answered with a reset.
/// </summary>
internal static class RefusingPort
{
    private static readonly ConcurrentBag<Socket> Held = [];

    public static IPEndPoint Reserve()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, false);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Held.Add(socket);
        return (IPEndPoint)socket.LocalEndPoint!;
    }
}

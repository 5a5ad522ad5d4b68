using System.Net;
using System.Net.Sockets;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// Picks loopback ports that are free right now (bind port 0, read it back, close). Ports handed out in this
/// run are not handed out again, so two peers never get the same one.
/// </summary>
internal static class FreePorts
{
    private static readonly HashSet<int> Handed = [];

    public static IPEndPoint Next()
    {
        lock (Handed)
        {
            for (var attempt = 0; attempt < 100; attempt++)
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
                if (Handed.Add(port))
                {
                    return new IPEndPoint(IPAddress.Loopback, port);
                }
            }
        }

        throw new E2eException("could not find a free loopback port");
    }
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Proxy.Core.Addresses;
using Proxy.Core.Capture;

namespace Proxy.Sidecar.Tests.Capture;

/// <summary>
/// A minimal transparent redirect target for the real-capture tests, built on <see cref="SoOriginalDstResolver"/>
/// and <see cref="RedirectLoopGuard"/>: it stands in for <c>sidecar run</c> and takes the same listen flags.
/// <list type="bullet">
/// <item>outbound listener: forwards to the original destination;</item>
/// <item>inbound listener: forwards to the original port on loopback (127.0.0.1 or ::1), as a sidecar
///   reaches its local application (connecting to the pod IP would be captured again: PROXY_OUTPUT sends the
///   proxy's own traffic to a local non-loopback address to the inbound listener).</item>
/// </list>
/// <c>--mark N</c> sets SO_MARK on upstream sockets (exemption by mark; needs CAP_NET_ADMIN, so root).
/// Prints one line per connection on stdout: "outbound|inbound CLIENT -> ORIGINAL_DESTINATION" or
/// "outbound|inbound refused CLIENT: REASON". Runs until its standard input closes.
/// </summary>
internal static class CaptureForwarder
{
    public const string CommandName = "capture-forwarder";

    private static readonly Lock OutputLock = new();

    public static int Run(string[] args)
    {
        IPEndPoint? outbound = null;
        IPEndPoint? inbound = null;
        int? mark = null;
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--outbound-listen":
                    outbound = IPEndPoint.Parse(args[i + 1]);
                    break;
                case "--inbound-listen":
                    inbound = IPEndPoint.Parse(args[i + 1]);
                    break;
                case "--admin-listen":
                    break;
                case "--mark":
                    mark = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                default:
                    Console.Error.WriteLine($"capture-forwarder: unknown flag {args[i]}");
                    return 64;
            }
        }

        if (outbound is null || inbound is null)
        {
            Console.Error.WriteLine("capture-forwarder: --outbound-listen and --inbound-listen are required");
            return 64;
        }

        using var outboundListener = Listen(outbound);
        using var inboundListener = Listen(inbound);
        _ = AcceptLoopAsync(outboundListener, inbound: false, mark);
        _ = AcceptLoopAsync(inboundListener, inbound: true, mark);
        WriteLine($"ready outbound={outboundListener.LocalEndPoint} inbound={inboundListener.LocalEndPoint}");

        // The test ends us by closing stdin (or killing us).
        Console.In.ReadToEnd();
        return 0;
    }

    private static Socket Listen(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (endPoint.AddressFamily == AddressFamily.InterNetworkV6)
        {
            socket.DualMode = true;
        }

        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(endPoint);
        socket.Listen(128);
        return socket;
    }

    private static async Task AcceptLoopAsync(Socket listener, bool inbound, int? mark)
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = HandleAsync(client, inbound, mark);
        }
    }

    private static async Task HandleAsync(Socket client, bool inbound, int? mark)
    {
        var kind = inbound ? "inbound" : "outbound";
        using (client)
        {
            var peer = Normalize((IPEndPoint)client.RemoteEndPoint!);
            if (!SoOriginalDstResolver.Instance.TryResolve(client, out var destination, out var error))
            {
                WriteLine($"{kind} refused {peer}: {error}");
                return;
            }

            if (RedirectLoopGuard.IsSelf(destination, new ListenAddress((IPEndPoint)client.LocalEndPoint!)))
            {
                WriteLine($"{kind} refused {peer}: sent straight to the listener {destination}, not redirected");
                return;
            }

            var target = inbound
                ? new IPEndPoint(destination.EndPoint.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Loopback : IPAddress.IPv6Loopback, destination.EndPoint.Port)
                : destination.EndPoint;
            WriteLine($"{kind} {peer} -> {destination}");

            using var upstream = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            if (mark is { } value)
            {
                // SO_MARK (SOL_SOCKET 1, option 36); needs CAP_NET_ADMIN.
                upstream.SetRawSocketOption(1, 36, BitConverter.GetBytes(value));
            }

            try
            {
                using var connectTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await upstream.ConnectAsync(target, connectTimeout.Token);
                await Task.WhenAll(PumpAsync(client, upstream), PumpAsync(upstream, client));
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
                WriteLine($"{kind} failed {peer} -> {target}: {ex.Message}");
            }
        }
    }

    private static async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None);
            }
        }
        catch (SocketException)
        {
            // The other direction or the peer ended the session.
        }
    }

    private static IPEndPoint Normalize(IPEndPoint endPoint) =>
        endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;

    private static void WriteLine(string line)
    {
        lock (OutputLock)
        {
            Console.Out.WriteLine(line.ToString(CultureInfo.InvariantCulture));
            Console.Out.Flush();
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Capture;
using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Capture;

/// <summary>
/// Transparent capture for real, as root, in network namespaces of our own (<see cref="NamespacePair"/>):
/// the rules come from the real <c>sidecar iptables</c> code path (run as a program inside the app
/// namespace), the redirect target runs as uid 1337 and reads SO_ORIGINAL_DST with our resolver.
/// <code>
///  app namespace                                                     peer namespace
///  client (uid 0) --connect 192.0.2.2:P--> OUTPUT REDIRECT -> :15001 target (uid 1337) --> server 192.0.2.2:P
///  app server [::]:P  &lt;-- 127.0.0.1:P -- :15006 target &lt;-- PREROUTING REDIRECT &lt;--connect 192.0.2.1:P-- client
/// </code>
/// Servers answer with the addresses they saw ("from A to B"), so a test proves at once that the bytes went
/// through the target (the server's peer is not the client) and that the target dialled exactly the
/// original destination (the only place it can have learned it is SO_ORIGINAL_DST).
/// </summary>
public sealed partial class RealCaptureTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static string TestAssembly => Path.Combine(AppContext.BaseDirectory, typeof(TestProgram).Assembly.GetName().Name + ".dll");

    // The sidecar command line that installs the rules: the real `sidecar iptables`.
    private static string[] SidecarIptables => [SidecarDll, "iptables"];

    // The redirect target, run as uid 1337 in the app namespace: the real sidecar. (The test forwarder,
    // CaptureForwarder, remains for the exemption-by-gid and by-mark rule tests.)
    private static string[] RedirectTarget => [SidecarDll, "run", "--outbound-listen", "[::]:15001", "--inbound-listen", "[::]:15006", "--admin-listen", "off"];

    private static string SidecarDll => Path.Combine(AppContext.BaseDirectory, "sidecar.dll");

    // Our forwarder prints what it resolved; `sidecar run` reports differently (access log).
    private static bool TargetPrintsResolutions => RedirectTarget.Contains(CaptureForwarder.CommandName);

    public static TheoryData<string, string> ModesAndFamilies => new()
    {
        { "nft", "v4" },
        { "nft", "v6" },
        { "legacy", "v4" },
        { "legacy", "v6" },
    };

    [Theory]
    [MemberData(nameof(ModesAndFamilies))]
    public async Task Outbound_AppConnectsToPeer_IsRedirectedAndForwardedToOriginalDestination(string mode, string family)
    {
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode);
        using var target = await StartRedirectTargetAsync(pair);

        await AssertOutboundCapturedAsync(pair, target, family, TargetPrintsResolutions);
    }

    [Theory]
    [InlineData("nft")]
    [InlineData("legacy")]
    public async Task Outbound_ProxyExemptByGidOnly_NoLoop(string mode)
    {
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode, "--proxy-uid", "", "--proxy-gid", "1337");
        // Same uid as the client (root): only the gid tells the proxy's sockets apart.
        using var target = await StartRedirectTargetAsync(pair, uid: null, gid: 1337, ForwarderCommand());

        await AssertOutboundCapturedAsync(pair, target, "v4", printsResolutions: true);
    }

    [Theory]
    [InlineData("nft")]
    [InlineData("legacy")]
    public async Task Outbound_ProxyExemptByMarkOnly_NoLoop(string mode)
    {
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode, "--proxy-uid", "", "--proxy-mark", "0x539");
        // Root like the client (SO_MARK needs CAP_NET_ADMIN): only the mark tells the proxy's sockets apart.
        using var target = await StartRedirectTargetAsync(pair, uid: null, gid: null, ForwarderCommand("--mark", "1337"));

        await AssertOutboundCapturedAsync(pair, target, "v6", printsResolutions: true);
    }

    private static string[] ForwarderCommand(params string[] extra) =>
        [TestAssembly, CaptureForwarder.CommandName, "--outbound-listen", "[::]:15001", "--inbound-listen", "[::]:15006", .. extra];

    private static async Task AssertOutboundCapturedAsync(NamespacePair pair, BackgroundProcess target, string family, bool printsResolutions)
    {
        var serverAddress = family == "v4" ? NamespacePair.PeerV4 : NamespacePair.PeerV6;
        using var listener = pair.Peer.Listen(new IPEndPoint(serverAddress, 0));
        var serverEndPoint = (IPEndPoint)listener.LocalEndPoint!;
        var server = ServeOnceAsync(listener);

        using var client = pair.App.CreateSocket(serverAddress.AddressFamily);
        var (header, echo) = await ExchangeAsync(client, serverEndPoint, "hello through the proxy");
        var clientEndPoint = (IPEndPoint)client.LocalEndPoint!;
        await server.WaitAsync(Timeout);

        var (from, to) = ParseHeader(header);
        Assert.Equal(serverEndPoint, to);
        Assert.Equal(clientEndPoint.Address, from.Address);
        Assert.NotEqual(clientEndPoint.Port, from.Port); // the server's peer is the target's upstream socket, not the client
        Assert.Equal("hello through the proxy", echo);

        if (printsResolutions)
        {
            // The target saw the right original destination, and exactly one outbound connection: its own
            // upstream connection was not captured again.
            await target.WaitForLineAsync(l => l == $"outbound {clientEndPoint} -> {serverEndPoint}", Timeout);
            Assert.Single(target.Lines, l => l.StartsWith("outbound ", StringComparison.Ordinal) && l.Contains(" -> ", StringComparison.Ordinal));
        }
    }

    [Theory]
    [MemberData(nameof(ModesAndFamilies))]
    public async Task Inbound_PeerConnectsToApp_IsRedirectedAndDeliveredOnLoopback(string mode, string family)
    {
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode);
        using var target = await StartRedirectTargetAsync(pair);

        var appAddress = family == "v4" ? NamespacePair.AppV4 : NamespacePair.AppV6;
        var loopback = family == "v4" ? IPAddress.Loopback : IPAddress.IPv6Loopback;
        using var listener = pair.App.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
        var appPort = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var app = ServeAsync(listener, connections: 3);

        // 1. From the peer to the app's address: captured by PREROUTING, delivered by the sidecar to the
        //    original destination from the passthrough source (127.0.0.6 / ::6), which the rules let through.
        using (var client = pair.Peer.CreateSocket(appAddress.AddressFamily))
        {
            var (header, echo) = await ExchangeAsync(client, new IPEndPoint(appAddress, appPort), "inbound bytes");
            var (from, to) = ParseHeader(header);
            Assert.Equal(InboundPassthrough.SourceFor(appAddress.AddressFamily), from.Address);
            Assert.Equal(new IPEndPoint(appAddress, appPort), to);
            Assert.Equal("inbound bytes", echo);
            if (TargetPrintsResolutions)
            {
                await target.WaitForLineAsync(l => l == $"inbound {client.LocalEndPoint} -> {new IPEndPoint(appAddress, appPort)}", Timeout);
            }
        }

        // 2. The app to itself on loopback: not captured (the app server's peer is the client itself).
        await AssertDirectAsync(pair, new IPEndPoint(loopback, appPort));

        // 3. The app (not the proxy) to its own address: leaves via lo, not captured either.
        await AssertDirectAsync(pair, new IPEndPoint(appAddress, appPort));

        await app.WaitAsync(Timeout);
    }

    [Theory]
    [InlineData("nft")]
    [InlineData("legacy")]
    public async Task ExcludedPorts_InboundAndOutbound_ReachTheirServersDirectly(string mode)
    {
        using var pair = NamespacePair.Create();
        using var appListener = pair.App.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
        using var peerListener = pair.Peer.Listen(new IPEndPoint(NamespacePair.PeerV6, 0));
        var appPort = ((IPEndPoint)appListener.LocalEndPoint!).Port;
        var peerEndPoint = (IPEndPoint)peerListener.LocalEndPoint!;
        ApplyRules(pair, "--mode", mode, "--exclude-inbound-ports", $"{appPort}", "--exclude-outbound-ports", $"{peerEndPoint.Port}");
        using var target = await StartRedirectTargetAsync(pair);
        var app = ServeOnceAsync(appListener);
        var peer = ServeOnceAsync(peerListener);

        // Inbound to an excluded port: the app sees the peer's own socket.
        using (var client = pair.Peer.CreateSocket(AddressFamily.InterNetwork))
        {
            var (header, _) = await ExchangeAsync(client, new IPEndPoint(NamespacePair.AppV4, appPort), "x");
            Assert.Equal((IPEndPoint)client.LocalEndPoint!, ParseHeader(header).From);
        }

        // Outbound to an excluded port: the peer sees the app's own socket.
        using (var client = pair.App.CreateSocket(AddressFamily.InterNetworkV6))
        {
            var (header, _) = await ExchangeAsync(client, peerEndPoint, "y");
            Assert.Equal((IPEndPoint)client.LocalEndPoint!, ParseHeader(header).From);
        }

        await Task.WhenAll(app, peer).WaitAsync(Timeout);
        if (TargetPrintsResolutions)
        {
            Assert.DoesNotContain(target.Lines, l => l.Contains(" -> ", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("nft", "v4")]
    [InlineData("legacy", "v6")]
    public async Task Hairpin_ProxyDialsOwnPodAddress_IsRedirectedToInbound(string mode, string family)
    {
        // The proxy (uid 1337) resolving a service to its own pod: its connection to the pod address leaves
        // via lo and must enter through the inbound listener (Istio's rule), not reach the app directly.
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode);
        using var target = await StartRedirectTargetAsync(pair);
        var appAddress = family == "v4" ? NamespacePair.AppV4 : NamespacePair.AppV6;
        using var listener = pair.App.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
        var appEndPoint = new IPEndPoint(appAddress, ((IPEndPoint)listener.LocalEndPoint!).Port);
        var app = ServeOnceAsync(listener);

        using var proxySocket = pair.App.CreateSocket(appAddress.AddressFamily, ownerUid: 1337);
        var (header, echo) = await ExchangeAsync(proxySocket, appEndPoint, "hairpin");
        await app.WaitAsync(Timeout);

        Assert.Equal(InboundPassthrough.SourceFor(appAddress.AddressFamily), ParseHeader(header).From.Address);
        Assert.Equal("hairpin", echo);
        if (TargetPrintsResolutions)
        {
            await target.WaitForLineAsync(l => l == $"inbound {proxySocket.LocalEndPoint} -> {appEndPoint}", Timeout);
        }
    }

    [Theory]
    [InlineData("nft", "v4")]
    [InlineData("legacy", "v6")]
    public async Task PassthroughSource_ProxyDialsOwnPodAddressFromIt_ReachesAppDirectly(string mode, string family)
    {
        // How the inbound listener may deliver to the pod's own address without looping: bind the
        // passthrough source. (::6 has to be put on lo first; 127.0.0.6 is local already.)
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode);
        var appAddress = family == "v4" ? NamespacePair.AppV4 : NamespacePair.AppV6;
        var source = InboundPassthrough.SourceFor(appAddress.AddressFamily);
        if (family == "v6")
        {
            pair.App.Exec("ip", "-6", "addr", "replace", "::6/128", "dev", "lo");
        }

        using var listener = pair.App.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
        var appEndPoint = new IPEndPoint(appAddress, ((IPEndPoint)listener.LocalEndPoint!).Port);
        var app = ServeOnceAsync(listener);

        using var proxySocket = pair.App.CreateSocket(appAddress.AddressFamily, ownerUid: 1337);
        proxySocket.Bind(new IPEndPoint(source, 0));
        var (header, echo) = await ExchangeAsync(proxySocket, appEndPoint, "passthrough");
        await app.WaitAsync(Timeout);

        Assert.Equal(new IPEndPoint(source, ((IPEndPoint)proxySocket.LocalEndPoint!).Port), ParseHeader(header).From);
        Assert.Equal("passthrough", echo);
    }

    [Theory]
    [InlineData("nft")]
    [InlineData("legacy")]
    public async Task ExcludedCidr_Ipv4Peer_NotCapturedWhileIpv6StillIs(string mode)
    {
        using var pair = NamespacePair.Create();
        ApplyRules(pair, "--mode", mode, "--exclude-outbound-cidrs", "192.0.2.0/28");
        using var target = await StartRedirectTargetAsync(pair);
        using var v4Listener = pair.Peer.Listen(new IPEndPoint(NamespacePair.PeerV4, 0));
        var v4Server = ServeOnceAsync(v4Listener);

        using (var client = pair.App.CreateSocket(AddressFamily.InterNetwork))
        {
            var (header, _) = await ExchangeAsync(client, (IPEndPoint)v4Listener.LocalEndPoint!, "direct");
            Assert.Equal((IPEndPoint)client.LocalEndPoint!, ParseHeader(header).From);
        }

        await v4Server.WaitAsync(Timeout);
        await AssertOutboundCapturedAsync(pair, target, "v6", TargetPrintsResolutions);
    }

    [Theory]
    [InlineData("nft")]
    [InlineData("legacy")]
    public void Apply_TwiceThenRemove_IsIdempotentAndRemovesOnlyOurRules(string mode)
    {
        using var pair = NamespacePair.Create();
        var backend = mode;
        foreach (var tool in new[] { "iptables", "ip6tables" })
        {
            // Someone else's rules, which must survive everything we do.
            var foreign = "*nat\n:OTHER_CHAIN - [0:0]\n-A OTHER_CHAIN -p udp -j RETURN\n-A OUTPUT -p udp --dport 53 -j OTHER_CHAIN\nCOMMIT\n";
            RestoreIn(pair.App, $"{tool}-{backend}-restore", foreign);
        }

        ApplyRules(pair, "--mode", mode);
        var once4 = Save(pair, $"iptables-{backend}-save");
        var once6 = Save(pair, $"ip6tables-{backend}-save");
        Assert.Contains("-A OUTPUT -p tcp -j PROXY_OUTPUT", once4, StringComparison.Ordinal);
        Assert.Contains("-A PREROUTING -p tcp -j PROXY_INBOUND", once6, StringComparison.Ordinal);

        ApplyRules(pair, "--mode", mode);
        Assert.Equal(once4, Save(pair, $"iptables-{backend}-save"));
        Assert.Equal(once6, Save(pair, $"ip6tables-{backend}-save"));

        ApplyRules(pair, "--mode", mode, "--remove");
        foreach (var tool in new[] { "iptables", "ip6tables" })
        {
            var after = Save(pair, $"{tool}-{backend}-save");
            Assert.DoesNotContain("PROXY_", after, StringComparison.Ordinal);
            Assert.Contains("-A OUTPUT -p udp -m udp --dport 53 -j OTHER_CHAIN", after, StringComparison.Ordinal);
            Assert.Contains("-A OTHER_CHAIN -p udp -j RETURN", after, StringComparison.Ordinal);
        }

        // Removing again finds nothing and succeeds.
        ApplyRules(pair, "--mode", mode, "--remove");
    }

    [Fact]
    public void Apply_AutoModeWithLegacyRulesPresent_WritesToLegacy()
    {
        using var pair = NamespacePair.Create();
        RestoreIn(pair.App, "iptables-legacy-restore", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 9 -j ACCEPT\nCOMMIT\n");

        var output = ApplyRules(pair, "--mode", "auto");

        Assert.Contains("Using iptables-legacy", output, StringComparison.Ordinal);
        Assert.Contains("-A OUTPUT -p tcp -j PROXY_OUTPUT", Save(pair, "iptables-legacy-save"), StringComparison.Ordinal);
        Assert.DoesNotContain("PROXY_", Save(pair, "iptables-nft-save"), StringComparison.Ordinal);
    }

    private static string ApplyRules(NamespacePair pair, params string[] flags)
    {
        var (exitCode, output, error) = pair.App.TryExec([DotnetHost.Path, .. SidecarIptables, .. flags]);
        Assert.True(exitCode == 0, $"sidecar iptables {string.Join(' ', flags)} exited with {exitCode}:\n{output}\n{error}");
        return output;
    }

    private static void RestoreIn(NetworkNamespace ns, string restore, string input)
    {
        var file = Path.Combine(Path.GetTempPath(), $"pxt-rules-{Guid.NewGuid():N}");
        File.WriteAllText(file, input);
        try
        {
            ns.Exec(restore, "--noflush", file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>iptables-save of table nat without comments and counters, for comparing states.</summary>
    private static string Save(NamespacePair pair, string save)
    {
        var text = pair.App.Exec(save, "-t", "nat");
        var sb = new StringBuilder();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length > 0 && !line.StartsWith('#'))
            {
                sb.Append(line).Append('\n');
            }
        }

        return sb.ToString();
    }

    private static Task<BackgroundProcess> StartRedirectTargetAsync(NamespacePair pair) =>
        StartRedirectTargetAsync(pair, uid: 1337, gid: 1337, RedirectTarget);

    private static async Task<BackgroundProcess> StartRedirectTargetAsync(NamespacePair pair, int? uid, int? gid, string[] command)
    {
        var target = pair.App.Start(uid, gid, [DotnetHost.Path, .. command]);
        try
        {
            // Ready when both listeners accept. These probes go straight to the listeners (loopback is not
            // captured), so the target must refuse them with the loop guard.
            await WaitForListenerAsync(pair.App, new IPEndPoint(IPAddress.Loopback, 15001), target);
            await WaitForListenerAsync(pair.App, new IPEndPoint(IPAddress.IPv6Loopback, 15006), target);
            if (command.Contains(CaptureForwarder.CommandName))
            {
                await target.WaitForLineAsync(l => l.StartsWith("outbound refused 127.0.0.1:", StringComparison.Ordinal) && l.Contains("sent straight to the listener 127.0.0.1:15001", StringComparison.Ordinal), Timeout);
                await target.WaitForLineAsync(l => l.StartsWith("inbound refused [::1]:", StringComparison.Ordinal) && l.Contains("sent straight to the listener [::1]:15006", StringComparison.Ordinal), Timeout);
            }

            return target;
        }
        catch
        {
            target.Dispose();
            throw;
        }
    }

    private static async Task WaitForListenerAsync(NetworkNamespace ns, IPEndPoint endPoint, BackgroundProcess target)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            using var probe = ns.CreateSocket(endPoint.AddressFamily);
            try
            {
                await probe.ConnectAsync(endPoint).WaitAsync(Timeout);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                // Not listening yet: the target is still starting.
                await Task.Delay(50);
            }
            catch (SocketException ex)
            {
                throw new TimeoutException($"The redirect target did not listen on {endPoint} within {Timeout} ({ex.SocketErrorCode}). stdout:\n{string.Join('\n', target.Lines)}\nstderr:\n{target.StandardError}");
            }
        }
    }

    private static async Task AssertDirectAsync(NamespacePair pair, IPEndPoint endPoint)
    {
        using var client = pair.App.CreateSocket(endPoint.AddressFamily);
        var (header, echo) = await ExchangeAsync(client, endPoint, "direct");
        var (from, _) = ParseHeader(header);
        Assert.Equal((IPEndPoint)client.LocalEndPoint!, from);
        Assert.Equal("direct", echo);
    }

    /// <summary>Connects, reads the server's header line, sends a message, half-closes, reads the echo.</summary>
    private static async Task<(string Header, string Echo)> ExchangeAsync(Socket client, IPEndPoint endPoint, string message)
    {
        await client.ConnectAsync(endPoint).WaitAsync(Timeout);
        await client.SendAsync(Encoding.ASCII.GetBytes(message)).WaitAsync(Timeout);
        client.Shutdown(SocketShutdown.Send);
        var received = await ReadToEndAsync(client);
        var newline = received.IndexOf('\n', StringComparison.Ordinal);
        Assert.True(newline >= 0, $"no header line from the server; received '{received}'");
        return (received[..newline], received[(newline + 1)..]);
    }

    private static async Task<string> ReadToEndAsync(Socket socket)
    {
        var buffer = new byte[4096];
        var sb = new StringBuilder();
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer).WaitAsync(Timeout);
            if (read == 0)
            {
                return sb.ToString();
            }

            sb.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
    }

    private static (IPEndPoint From, IPEndPoint To) ParseHeader(string header)
    {
        var parts = header.Split(' ');
        Assert.True(parts.Length == 4 && parts[0] == "from" && parts[2] == "to", $"bad header '{header}'");
        return (IPEndPoint.Parse(parts[1]), IPEndPoint.Parse(parts[3]));
    }

    private static async Task ServeOnceAsync(Socket listener) => await ServeAsync(listener, 1);

    /// <summary>Accepts <paramref name="connections"/> connections; to each writes "from PEER to LOCAL\n" and echoes until EOF.</summary>
    private static async Task ServeAsync(Socket listener, int connections)
    {
        for (var i = 0; i < connections; i++)
        {
            using var connection = await listener.AcceptAsync().WaitAsync(Timeout);
            var header = $"from {Plain((IPEndPoint)connection.RemoteEndPoint!)} to {Plain((IPEndPoint)connection.LocalEndPoint!)}\n";
            await connection.SendAsync(Encoding.ASCII.GetBytes(header)).WaitAsync(Timeout);
            var buffer = new byte[4096];
            while (true)
            {
                var read = await connection.ReceiveAsync(buffer).WaitAsync(Timeout);
                if (read == 0)
                {
                    break;
                }

                await connection.SendAsync(buffer.AsMemory(0, read)).AsTask().WaitAsync(Timeout);
            }

            connection.Shutdown(SocketShutdown.Send);
        }
    }

    private static IPEndPoint Plain(IPEndPoint endPoint) =>
        endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;
}

/// <summary>The dotnet host that runs the test assembly (and so can run it, or sidecar.dll, as a program).</summary>
internal static class DotnetHost
{
    public static string Path { get; } = Find();

    private static string Find()
    {
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk))
        {
            return fromSdk;
        }

        var current = Environment.ProcessPath;
        if (current is not null && System.IO.Path.GetFileNameWithoutExtension(current) == "dotnet")
        {
            return current;
        }

        return new ProcessCommandRunner().Locate("dotnet") ?? throw new InvalidOperationException("Cannot find the dotnet host to run the test programs.");
    }
}

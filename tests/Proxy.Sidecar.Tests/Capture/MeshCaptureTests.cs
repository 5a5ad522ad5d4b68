using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Capture;
using Proxy.Sidecar.Tests.Tls;

namespace Proxy.Sidecar.Tests.Capture;

/// <summary>
/// Two pods, two sidecars, mesh mTLS between them, nothing changed in the apps: both namespaces get the real
/// <c>sidecar iptables</c> rules and a real <c>sidecar run</c> (uid 1337) with its own workload identity.
/// <code>
///  app namespace (identity web/frontend)                    peer namespace (identity shop/app, strict)
///  client --192.0.2.2:P--> OUTPUT -> :15001 sidecar A ==mTLS==> PREROUTING -> :15006 sidecar B --127.0.0.6--> server :P
/// </code>
/// Sidecar B is strict, so a server that answers at all was reached over mesh mTLS; the server sees B's passthrough
/// source, and a plaintext connection that skips sidecar A (as uid 1337) is refused.
/// </summary>
public sealed partial class RealCaptureTests
{
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Mesh_TwoPodsTwoSidecars_TcpAndHttpOverMutualTls_PlaintextRefused()
    {
        using var pair = NamespacePair.Create();
        using var pki = new MeshTestPki();
        var files = Directory.CreateTempSubdirectory("pxt-mesh-");
        try
        {
            // The sidecars run as uid 1337: their identity files must be readable by it.
            File.SetUnixFileMode(files.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            string Copy(string path)
            {
                var copy = Path.Combine(files.FullName, Path.GetFileName(path));
                File.Copy(path, copy, overwrite: true);
                File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
                return copy;
            }

            string MeshSection(string identity, string mode)
            {
                var (certificate, key) = pki.IssueFiles(identity);
                return $$"""{ "certificate": "{{Copy(certificate)}}", "key": "{{Copy(key)}}", "trustBundle": "{{Copy(pki.TrustBundlePath)}}", "mode": "{{mode}}" }""";
            }

            using var tcpListener = pair.Peer.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
            using var httpListener = pair.Peer.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);
            var tcpTarget = new IPEndPoint(NamespacePair.PeerV4, ((IPEndPoint)tcpListener.LocalEndPoint!).Port);
            var httpTarget = new IPEndPoint(NamespacePair.PeerV4, ((IPEndPoint)httpListener.LocalEndPoint!).Port);
            const string PeerIdentity = "spiffe://cluster.local/ns/shop/sa/app";

            var configA = Path.Combine(files.FullName, "a.json");
            await File.WriteAllTextAsync(configA, $$"""
                { "adminListen": "off", "mesh": {{MeshSection("spiffe://cluster.local/ns/web/sa/frontend", "permissive")}},
                  "services": [
                    { "name": "peer-tcp", "addresses": ["{{tcpTarget}}"], "endpoints": ["{{tcpTarget}}"], "mesh": { "identity": "{{PeerIdentity}}" } },
                    { "name": "peer-http", "addresses": ["{{httpTarget}}"], "endpoints": ["{{httpTarget}}"], "mesh": { "identity": "{{PeerIdentity}}" } } ] }
                """);
            var configB = Path.Combine(files.FullName, "b.json");
            await File.WriteAllTextAsync(configB, $$"""{ "adminListen": "off", "mesh": {{MeshSection(PeerIdentity, "strict")}} }""");
            File.SetUnixFileMode(configA, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            File.SetUnixFileMode(configB, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

            ApplyRules(pair, "--mode", "nft");
            var (exitCode, output, error) = pair.Peer.TryExec([DotnetHost.Path, .. SidecarIptables, "--mode", "nft"]);
            Assert.True(exitCode == 0, $"sidecar iptables in the peer namespace exited with {exitCode}:\n{output}\n{error}");
            using var sidecarA = await StartSidecarAsync(pair.App, configA);
            using var sidecarB = await StartSidecarAsync(pair.Peer, configB);

            // 1. Opaque TCP: the server sees sidecar B's passthrough source and its own address as the destination.
            var tcpServer = ServeOnceAsync(tcpListener);
            using (var client = pair.App.CreateSocket(AddressFamily.InterNetwork))
            {
                var (header, echo) = await ExchangeAsync(client, tcpTarget, "hello over mesh mTLS");
                var (from, to) = ParseHeader(header);
                Assert.Equal(InboundPassthrough.SourceFor(AddressFamily.InterNetwork), from.Address);
                Assert.Equal(tcpTarget, to);
                Assert.Equal("hello over mesh mTLS", echo);
            }

            await tcpServer.WaitAsync(Timeout);

            // 2. HTTP/1.1: carried as HTTP/2 between the sidecars, handed to the app as HTTP/1.1 without the marker.
            var httpServer = ServeHttpOnceAsync(httpListener);
            using (var client = pair.App.CreateSocket(AddressFamily.InterNetwork))
            {
                await client.ConnectAsync(httpTarget).WaitAsync(Timeout);
                await client.SendAsync("GET /orders HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"u8.ToArray()).WaitAsync(Timeout);
                var response = await ReadToEndAsync(client);
                Assert.True(response.StartsWith("HTTP/1.1 200", StringComparison.Ordinal), $"{response}\nsidecar A:\n{string.Join('\n', sidecarA.Lines)}\n{sidecarA.StandardError}\nsidecar B:\n{string.Join('\n', sidecarB.Lines)}\n{sidecarB.StandardError}");
                Assert.Contains($"from {InboundPassthrough.SourceFor(AddressFamily.InterNetwork)}:", response, StringComparison.Ordinal);
                Assert.Contains("GET /orders HTTP/1.1", response, StringComparison.Ordinal);
                Assert.DoesNotContain("proxy-mesh", response, StringComparison.OrdinalIgnoreCase);
            }

            await httpServer.WaitAsync(Timeout);

            // 3. Plaintext that skips sidecar A (uid 1337 is not captured): sidecar B is strict and closes it unanswered.
            using (var bypass = pair.App.CreateSocket(AddressFamily.InterNetwork, ownerUid: 1337))
            {
                await bypass.ConnectAsync(tcpTarget).WaitAsync(Timeout);
                await bypass.SendAsync("plaintext"u8.ToArray()).WaitAsync(Timeout);
                string answer;
                try
                {
                    answer = await ReadToEndAsync(bypass);
                }
                catch (SocketException)
                {
                    answer = "";
                }

                Assert.Equal("", answer);
            }

            await sidecarB.WaitForLineAsync(l => l.Contains("strict mesh mode and plaintext arrived", StringComparison.Ordinal), Timeout);
        }
        finally
        {
            files.Delete(recursive: true);
        }
    }

    private static async Task<BackgroundProcess> StartSidecarAsync(NetworkNamespace ns, string config)
    {
        var sidecar = ns.Start(1337, 1337, [DotnetHost.Path, SidecarDll, "run", "--config", config]);
        try
        {
            await WaitForListenerAsync(ns, new IPEndPoint(IPAddress.Loopback, 15001), sidecar);
            await WaitForListenerAsync(ns, new IPEndPoint(IPAddress.IPv6Loopback, 15006), sidecar);
            return sidecar;
        }
        catch
        {
            sidecar.Dispose();
            throw;
        }
    }

    /// <summary>Accepts one HTTP/1.1 request; answers 200 with "from PEER to LOCAL" and the request head it received.</summary>
    private static async Task ServeHttpOnceAsync(Socket listener)
    {
        using var connection = await listener.AcceptAsync().WaitAsync(Timeout);
        var head = new StringBuilder();
        var buffer = new byte[4096];
        while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await connection.ReceiveAsync(buffer).WaitAsync(Timeout);
            if (read == 0)
            {
                return;
            }

            head.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        var body = $"from {Plain((IPEndPoint)connection.RemoteEndPoint!)} to {Plain((IPEndPoint)connection.LocalEndPoint!)}\n{head}";
        var bytes = Encoding.ASCII.GetBytes(body);
        await connection.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {bytes.Length}\r\nConnection: close\r\n\r\n")).WaitAsync(Timeout);
        await connection.SendAsync(bytes).WaitAsync(Timeout);
        connection.Shutdown(SocketShutdown.Send);
    }
}

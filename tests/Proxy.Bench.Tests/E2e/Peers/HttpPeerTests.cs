using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.Tests.TestSupport;

namespace Proxy.Bench.Tests.E2e.Peers;

/// <summary>The HTTP templates proxy real requests (where HAProxy / nginx are installed).</summary>
public sealed class HttpPeerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static TheoryData<string> Peers => new() { "haproxy", "nginx" };

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task StartAsync_Http1_ProxiesKeepAliveRequestsToUpstream(string name)
    {
        if (ToolInstaller.Find(name) is not { } executable)
        {
            return;
        }

        var work = Directory.CreateTempSubdirectory("bench-test-peer-").FullName;
        await using var upstream = new HelloServer();
        IPeer peer = name == "haproxy" ? new HaproxyPeer(executable, "HAProxy", "auto", work) : new NginxPeer(executable, "nginx", work);
        try
        {
            await peer.StartAsync(new PeerConfig(ProxyProtocol.Http1, upstream.EndPoint), Timeout, CancellationToken.None).WaitAsync(Timeout);
            using var client = new HttpClient();
            for (var i = 0; i < 3; i++)
            {
                var body = await client.GetStringAsync(new Uri($"http://{peer.ListenEndPoint}/hello")).WaitAsync(Timeout);
                Assert.Equal("hello", body);
            }

            Assert.True(upstream.Requests >= 3, $"upstream saw {upstream.Requests} requests");
        }
        finally
        {
            await peer.DisposeAsync();
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public async Task YarpPeer_Http1_ChildProcessProxiesKeepAliveRequestsToUpstream()
    {
        var dotnet = ToolInstaller.Require("dotnet");
        var work = Directory.CreateTempSubdirectory("bench-test-yarp-").FullName;
        await using var upstream = new HelloServer();
        var peer = new YarpPeer(dotnet, YarpPeer.BenchAssemblyPath, YarpPeer.PackageVersion(), work);
        try
        {
            await peer.StartAsync(new PeerConfig(ProxyProtocol.Http1, upstream.EndPoint), Timeout, CancellationToken.None).WaitAsync(Timeout);
            Assert.True(File.Exists(YarpPeer.BenchAssemblyPath), YarpPeer.BenchAssemblyPath);
            Assert.NotNull(peer.Process);
            using var client = new HttpClient();
            for (var i = 0; i < 3; i++)
            {
                var body = await client.GetStringAsync(new Uri($"http://{peer.ListenEndPoint}/hello")).WaitAsync(Timeout);
                Assert.Equal("hello", body);
            }

            Assert.Equal(3, upstream.Requests);
        }
        finally
        {
            await peer.DisposeAsync();
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public async Task NginxBackend_StartAsync_AnswersEveryPathWithThe13ByteBody()
    {
        await ToolInstaller.EnsureAsync([NginxPeer.Requirement], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
        var work = Directory.CreateTempSubdirectory("bench-test-backend-").FullName;
        try
        {
            await using var backend = await NginxBackend.StartAsync(ToolInstaller.Require("nginx"), work, CancellationToken.None).WaitAsync(Timeout);
            using var client = new HttpClient();
            foreach (var path in new[] { "/", "/a/b?c=d" })
            {
                using var response = await client.GetAsync(new Uri($"http://{backend.EndPoint}{path}")).WaitAsync(Timeout);
                var body = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeout);
                Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
                Assert.Equal(13, body.Length);
                Assert.Equal(NginxBackend.Body, System.Text.Encoding.ASCII.GetString(body));
            }

            Assert.True(backend.IsRunning);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}

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
}

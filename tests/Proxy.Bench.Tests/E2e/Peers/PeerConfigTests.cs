using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.Tests.E2e.Peers;

public sealed class PeerConfigTests
{
    private static readonly IPEndPoint Upstream = new(IPAddress.Loopback, 40001);
    private static readonly IPEndPoint Listen = new(IPAddress.Loopback, 40002);
    private static readonly IPEndPoint Ready = new(IPAddress.Loopback, 40003);

    [Fact]
    public void HaproxyBuildConfig_Tcp_BindsListenerAndMonitorAndForwardsToUpstream()
    {
        var text = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready);

        Assert.Contains("nbthread 1", text, StringComparison.Ordinal);
        Assert.Contains("mode tcp", text, StringComparison.Ordinal);
        Assert.Contains("option splice-auto", text, StringComparison.Ordinal);
        Assert.Contains("bind 127.0.0.1:40002", text, StringComparison.Ordinal);
        Assert.Contains("bind 127.0.0.1:40003", text, StringComparison.Ordinal);
        Assert.Contains("monitor-uri /ready", text, StringComparison.Ordinal);
        Assert.Contains("server target 127.0.0.1:40001", text, StringComparison.Ordinal);
    }

    [Fact]
    public void HaproxyBuildConfig_SpliceModes_WriteTheMatchingOptions()
    {
        var always = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready, "always");
        var off = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready, "off");

        Assert.Contains("option splice-request", always, StringComparison.Ordinal);
        Assert.Contains("option splice-response", always, StringComparison.Ordinal);
        Assert.DoesNotContain("splice-auto", always, StringComparison.Ordinal);
        Assert.DoesNotContain("splice", off, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("always")]
    [InlineData("off")]
    public async Task HaproxyBuildConfig_Tcp_PassesHaproxyCheckWhenInstalled(string splice)
    {
        // `haproxy -c` validates without binding (installed from Debian when missing, as root).
        await ToolInstaller.EnsureAsync([new ToolRequirement("haproxy", "haproxy")], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
        var haproxy = ToolInstaller.Require("haproxy");

        var path = Path.Combine(Path.GetTempPath(), $"bench-test-{Guid.NewGuid():N}.cfg");
        await File.WriteAllTextAsync(path, HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready, splice));
        try
        {
            var result = await ProcessRunner.RunAsync(haproxy, ["-c", "-f", path], TimeSpan.FromSeconds(10), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(result.ExitCode == 0, result.RecentOutput);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void SidecarBuildConfig_Tcp_OneListenerOneServiceWithTheUpstreamEndpoint()
    {
        using var json = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen));
        var listener = Assert.Single(json.RootElement.GetProperty("listeners").EnumerateArray());
        var service = Assert.Single(json.RootElement.GetProperty("services").EnumerateArray());

        Assert.Equal("127.0.0.1:40002", listener.GetProperty("address").GetString());
        Assert.Equal("backend", listener.GetProperty("service").GetString());
        Assert.Equal("backend", service.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40001", Assert.Single(service.GetProperty("endpoints").EnumerateArray()).GetString());
    }

    [Fact]
    public void BuildConfig_UnsupportedProtocol_Throws()
    {
        Assert.Throws<NotSupportedException>(() => SidecarPeer.BuildConfig(new PeerConfig((ProxyProtocol)99, Upstream), Listen));
        Assert.Throws<NotSupportedException>(() => NginxPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready, "/tmp"));
    }

    [Theory]
    [InlineData("http1")]
    [InlineData("h2c")]
    public async Task HaproxyBuildConfig_Http_PassesHaproxyCheckWhenInstalled(string name)
    {
        var protocol = name == "h2c" ? ProxyProtocol.Http2 : ProxyProtocol.Http1;
        var text = HaproxyPeer.BuildConfig(new PeerConfig(protocol, Upstream), Listen, Ready);
        Assert.Contains("mode http", text, StringComparison.Ordinal);
        Assert.Contains("http-reuse always", text, StringComparison.Ordinal);
        await ToolInstaller.EnsureAsync([new ToolRequirement("haproxy", "haproxy")], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
        var haproxy = ToolInstaller.Require("haproxy");

        var path = Path.Combine(Path.GetTempPath(), $"bench-test-{Guid.NewGuid():N}.cfg");
        await File.WriteAllTextAsync(path, text);
        try
        {
            var result = await ProcessRunner.RunAsync(haproxy, ["-c", "-f", path], TimeSpan.FromSeconds(10), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(result.ExitCode == 0, result.RecentOutput);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("http1")]
    [InlineData("h2c")]
    public async Task NginxBuildConfig_Http_PassesNginxTestWhenInstalled(string name)
    {
        var protocol = name == "h2c" ? ProxyProtocol.Http2 : ProxyProtocol.Http1;
        var work = Directory.CreateTempSubdirectory("bench-test-nginx-").FullName;
        try
        {
            var text = NginxPeer.BuildConfig(new PeerConfig(protocol, Upstream), Listen, Ready, work);
            Assert.Contains("proxy_pass http://target;", text, StringComparison.Ordinal);
            Assert.Contains("listen 127.0.0.1:40002" + (protocol == ProxyProtocol.Http2 ? " http2" : string.Empty) + " backlog=4096;", text, StringComparison.Ordinal);
            await ToolInstaller.EnsureAsync([new ToolRequirement("nginx", "nginx")], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
            var nginx = ToolInstaller.Require("nginx");

            var path = Path.Combine(work, "nginx.conf");
            await File.WriteAllTextAsync(path, text);
            var result = await ProcessRunner.RunAsync(nginx, ["-t", "-p", work, "-c", path, "-e", "stderr"], TimeSpan.FromSeconds(10), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(result.ExitCode == 0, result.RecentOutput);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}

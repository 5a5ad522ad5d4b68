using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.YarpApp;

namespace Proxy.Bench.Tests.E2e.Peers;

/// <summary>The configuration templates of the HTTP/1.1 scenario: backend, sidecar, HAProxy, nginx, YARP.</summary>
public sealed class HttpConfigTests
{
    private static readonly IPEndPoint Upstream = new(IPAddress.Loopback, 40001);
    private static readonly IPEndPoint Listen = new(IPAddress.Loopback, 40002);
    private static readonly IPEndPoint Ready = new(IPAddress.Loopback, 40003);

    [Fact]
    public void SidecarBuildConfig_Http1_CaptureOffAdminInFileListenerMarkedHttp()
    {
        using var json = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready));
        var root = json.RootElement;
        var listener = Assert.Single(root.GetProperty("listeners").EnumerateArray());
        var service = Assert.Single(root.GetProperty("services").EnumerateArray());

        Assert.Equal("off", root.GetProperty("outboundListen").GetString());
        Assert.Equal("off", root.GetProperty("inboundListen").GetString());
        Assert.Equal("127.0.0.1:40003", root.GetProperty("adminListen").GetString());
        Assert.Equal("bench", listener.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40002", listener.GetProperty("address").GetString());
        Assert.Equal("backend", listener.GetProperty("service").GetString());
        Assert.Equal("http", listener.GetProperty("protocol").GetString());
        Assert.Equal("backend", service.GetProperty("name").GetString());
        Assert.False(service.TryGetProperty("addresses", out _));
        Assert.Equal("127.0.0.1:40001", Assert.Single(service.GetProperty("endpoints").EnumerateArray()).GetString());
    }

    [Fact]
    public void SidecarBuildConfig_Http1WithoutProtocol_LeavesTheKeyOut()
    {
        using var json = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready, listenerProtocol: null));
        var listener = Assert.Single(json.RootElement.GetProperty("listeners").EnumerateArray());

        Assert.False(listener.TryGetProperty("protocol", out _));
        Assert.Equal("127.0.0.1:40003", json.RootElement.GetProperty("adminListen").GetString());
    }

    [Fact]
    public void SidecarBuildConfig_Tcp_HasNoProtocolKeyEvenWhenOneIsGiven()
    {
        using var json = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready, "http"));
        var listener = Assert.Single(json.RootElement.GetProperty("listeners").EnumerateArray());

        Assert.False(listener.TryGetProperty("protocol", out _));
        Assert.False(json.RootElement.TryGetProperty("adminListen", out _));
    }

    [Fact]
    public void HaproxyBuildConfig_Http1_ModeHttpReuseAlwaysOneThreadWithTimeouts()
    {
        var text = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready);

        Assert.Contains("nbthread 1", text, StringComparison.Ordinal);
        Assert.Contains("mode http", text, StringComparison.Ordinal);
        Assert.Contains("http-reuse always", text, StringComparison.Ordinal);
        Assert.Contains("option http-keep-alive", text, StringComparison.Ordinal);
        Assert.Contains("timeout connect", text, StringComparison.Ordinal);
        Assert.Contains("timeout client", text, StringComparison.Ordinal);
        Assert.Contains("timeout server", text, StringComparison.Ordinal);
        Assert.Contains("server target 127.0.0.1:40001", text, StringComparison.Ordinal);
        Assert.DoesNotContain("splice", text, StringComparison.Ordinal);
    }

    [Fact]
    public void NginxBuildConfig_Http1_UpstreamKeepAliveHttp11ConnectionHeaderCleared()
    {
        var text = NginxPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready, "/tmp/w");

        Assert.Contains("worker_processes 1;", text, StringComparison.Ordinal);
        Assert.Contains("master_process off;", text, StringComparison.Ordinal);
        Assert.Contains("keepalive 64;", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_version 1.1;", text, StringComparison.Ordinal);
        Assert.Contains("proxy_set_header Connection \"\";", text, StringComparison.Ordinal);
        Assert.Contains("server 127.0.0.1:40001;", text, StringComparison.Ordinal);
        Assert.Contains("listen 127.0.0.1:40003;", text, StringComparison.Ordinal);
    }

    [Fact]
    public void NginxBackendBuildConfig_OneWorkerThirteenByteBodyNoLogs()
    {
        var text = NginxBackend.BuildConfig(Upstream, "/tmp/w");

        Assert.Equal(13, NginxBackend.Body.Length);
        Assert.Contains("worker_processes 1;", text, StringComparison.Ordinal);
        Assert.Contains("master_process off;", text, StringComparison.Ordinal);
        Assert.Contains("access_log off;", text, StringComparison.Ordinal);
        Assert.Contains("keepalive_requests 1000000;", text, StringComparison.Ordinal);
        Assert.Contains("listen 127.0.0.1:40001 backlog=4096;", text, StringComparison.Ordinal);
        Assert.Contains("return 200 \"Hello, world!\";", text, StringComparison.Ordinal);
        Assert.Contains("pid /tmp/w/nginx.pid;", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NginxBackendBuildConfig_PassesNginxTestWhenInstalled()
    {
        await ToolInstaller.EnsureAsync([NginxPeer.Requirement], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
        var nginx = ToolInstaller.Require("nginx");
        var work = Directory.CreateTempSubdirectory("bench-test-backend-").FullName;
        try
        {
            var path = Path.Combine(work, "nginx.conf");
            await File.WriteAllTextAsync(path, NginxBackend.BuildConfig(Upstream, work));
            var result = await ProcessRunner.RunAsync(nginx, ["-t", "-p", work, "-c", path, "-e", "stderr"], TimeSpan.FromSeconds(10), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(result.ExitCode == 0, result.RecentOutput);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public void YarpBuildArguments_Http1_RunsTheBenchAssemblyYarpSubcommand()
    {
        var arguments = YarpPeer.BuildArguments("/b/Proxy.Bench.dll", new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready);

        Assert.Equal(["/b/Proxy.Bench.dll", "yarp", "--listen", "127.0.0.1:40002", "--upstream", "127.0.0.1:40001", "--ready", "127.0.0.1:40003"], arguments);
        Assert.Equal(new YarpOptions(Listen, Upstream, Ready), YarpOptions.Parse([.. arguments.Skip(2)]));
    }

    [Fact]
    public void YarpBuildArguments_OtherProtocols_Throw()
    {
        Assert.Throws<NotSupportedException>(() => YarpPeer.BuildArguments("/b.dll", new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready));
    }

    [Fact]
    public void YarpPackageVersion_IsTheReferencedPackage()
    {
        Assert.StartsWith("2.3", YarpPeer.PackageVersion(), StringComparison.Ordinal);
    }
}

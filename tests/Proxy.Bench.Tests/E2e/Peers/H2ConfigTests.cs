using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Peers;
using Proxy.Bench.E2e.YarpApp;

namespace Proxy.Bench.Tests.E2e.Peers;

/// <summary>The configuration templates of the h2c scenario: HAProxy, nginx, YARP, sidecar, nghttpd (direct).</summary>
public sealed class H2ConfigTests
{
    private static readonly IPEndPoint Upstream = new(IPAddress.Loopback, 40001);
    private static readonly IPEndPoint Listen = new(IPAddress.Loopback, 40002);
    private static readonly IPEndPoint Ready = new(IPAddress.Loopback, 40003);

    [Fact]
    public void HaproxyBuildConfig_Http2_BindsProtoH2AndSpeaksHttp11ToTheBackend()
    {
        var text = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream), Listen, Ready);
        var lines = text.Split('\n', StringSplitOptions.TrimEntries);

        Assert.Contains("bind 127.0.0.1:40002 proto h2", lines);
        Assert.Contains("server target 127.0.0.1:40001", lines);
        Assert.Contains("mode http", lines);
        Assert.Contains("http-reuse always", lines);
        Assert.Contains("nbthread 1", lines);
        Assert.Equal(1, lines.Count(l => l.Contains("proto h2", StringComparison.Ordinal)));
        Assert.DoesNotContain("splice", text, StringComparison.Ordinal);
    }

    [Fact]
    public void NginxBuildConfig_Http2_ListensHttp2WithHttp11UpstreamKeepAlive()
    {
        var text = NginxPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream), Listen, Ready, "/tmp/w");

        Assert.Contains("listen 127.0.0.1:40002 http2 backlog=4096;", text, StringComparison.Ordinal);
        Assert.Contains("listen 127.0.0.1:40003;", text, StringComparison.Ordinal);
        Assert.Contains("keepalive_requests 1000000;", text, StringComparison.Ordinal); // nginx 1.22 applies it to HTTP/2 too (GOAWAY at the limit)
        Assert.Contains("keepalive 64;", text, StringComparison.Ordinal);
        Assert.Contains("proxy_http_version 1.1;", text, StringComparison.Ordinal);
        Assert.Contains("worker_processes 1;", text, StringComparison.Ordinal);
    }

    [Fact]
    public void SidecarBuildConfig_Http2_IsTheHttpListenerConfig()
    {
        var h2 = SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream), Listen, Ready);
        var h1 = SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http1, Upstream), Listen, Ready);
        using var json = JsonDocument.Parse(h2);
        var listener = Assert.Single(json.RootElement.GetProperty("listeners").EnumerateArray());

        Assert.Equal(h1, h2);
        Assert.Equal("http", listener.GetProperty("protocol").GetString());
        Assert.Equal("127.0.0.1:40003", json.RootElement.GetProperty("adminListen").GetString());
    }

    [Fact]
    public void YarpBuildArguments_Http2_AddsTheHttp2Flag()
    {
        var arguments = YarpPeer.BuildArguments("/b/Proxy.Bench.dll", new PeerConfig(ProxyProtocol.Http2, Upstream), Listen, Ready);

        Assert.Equal(["/b/Proxy.Bench.dll", "yarp", "--listen", "127.0.0.1:40002", "--upstream", "127.0.0.1:40001", "--ready", "127.0.0.1:40003", "--http2"], arguments);
        Assert.Equal(new YarpOptions(Listen, Upstream, Ready, Http2: true), YarpOptions.Parse([.. arguments.Skip(2)]));
    }

    [Fact]
    public void HaproxyBuildConfig_Http2Upstream_ServerSpeaksProtoH2()
    {
        var text = HaproxyPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream, Http2Upstream: true), Listen, Ready);
        var lines = text.Split('\n', StringSplitOptions.TrimEntries);

        Assert.Contains("bind 127.0.0.1:40002 proto h2", lines);
        Assert.Contains("server target 127.0.0.1:40001 proto h2", lines);
    }

    [Fact]
    public void SidecarBuildConfig_UpstreamProtocolSaidExplicitly()
    {
        using var h1 = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream), Listen, Ready));
        using var h2 = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Http2, Upstream, Http2Upstream: true), Listen, Ready));
        using var tcp = JsonDocument.Parse(SidecarPeer.BuildConfig(new PeerConfig(ProxyProtocol.Tcp, Upstream), Listen, Ready));

        Assert.Equal("http1", h1.RootElement.GetProperty("services")[0].GetProperty("upstreamProtocol").GetString());
        Assert.Equal("http2", h2.RootElement.GetProperty("services")[0].GetProperty("upstreamProtocol").GetString());
        Assert.False(tcp.RootElement.GetProperty("services")[0].TryGetProperty("upstreamProtocol", out _));
    }

    [Fact]
    public void YarpBuildArguments_Http2Upstream_RoundTrips()
    {
        var arguments = YarpPeer.BuildArguments("/b/Proxy.Bench.dll", new PeerConfig(ProxyProtocol.Http2, Upstream, Http2Upstream: true), Listen, Ready);

        Assert.Equal("--http2-upstream", arguments[^1]);
        Assert.Equal(new YarpOptions(Listen, Upstream, Ready, Http2: true, Http2Upstream: true), YarpOptions.Parse([.. arguments.Skip(2)]));
    }

    [Fact]
    public void NginxBackendBuildConfig_Http2_ListensH2cWithAnHttp11ProbeListener()
    {
        var probe = new IPEndPoint(IPAddress.Loopback, 40009);
        var text = NginxBackend.BuildConfig(Listen, "/tmp/w", http2: true, probe: probe);
        var plain = NginxBackend.BuildConfig(Listen, "/tmp/w");

        Assert.Contains("listen 127.0.0.1:40002 http2 backlog=4096;", text, StringComparison.Ordinal);
        Assert.Contains("listen 127.0.0.1:40009;", text, StringComparison.Ordinal);
        Assert.Contains("http2_max_concurrent_streams 1000;", text, StringComparison.Ordinal);
        Assert.Contains("listen 127.0.0.1:40002 backlog=4096;", plain, StringComparison.Ordinal);
        Assert.DoesNotContain("http2", plain, StringComparison.Ordinal);
    }

    [Fact]
    public void NghttpdBuildArguments_NoTlsOneWorkerBoundToTheAddress()
    {
        var arguments = NghttpdPeer.BuildArguments(Listen, "/tmp/w/htdocs");

        Assert.Equal(["--no-tls", "-n", "1", "-a", "127.0.0.1", "-d", "/tmp/w/htdocs", "40002"], arguments);
    }

    [Fact]
    public void NghttpdLaunch_NotHttp2_Throws()
    {
        var peer = new NghttpdPeer("/usr/sbin/nghttpd", "nghttpd 1.52.0", Path.GetTempPath());

        Assert.Throws<NotSupportedException>(() => peer.Launch(new PeerConfig(ProxyProtocol.Http1, Upstream)));
        Assert.Null(peer.Process);
    }
}

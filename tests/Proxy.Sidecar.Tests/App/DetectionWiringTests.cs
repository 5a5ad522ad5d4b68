using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.App;

/// <summary>Protocol detection wired into the capture listeners of the composed sidecar (127.0.0.1:0 everywhere).</summary>
public sealed class DetectionWiringTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var d in _disposables)
        {
            await d.DisposeAsync();
        }
    }

    private async Task<SidecarHost> StartAsync(ProxyConfig config, IPEndPoint destination)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(destination));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static ProxyConfig Config(TimeSpan detectTimeout, params int[] opaquePorts) => new()
    {
        OutboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        InboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
        Detect = new DetectConfig { Timeout = detectTimeout, OpaquePorts = opaquePorts },
    };

    private static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = new HttpClient { Timeout = Timeout };
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
    }

    [Theory]
    [InlineData("outbound")]
    [InlineData("inbound")]
    public async Task CaptureListener_HttpRequest_CountedAsHttp1AndServedByTheHttpStage(string listener)
    {
        var app = await HttpTestApp.StartAsync("app");
        _disposables.Add(app);
        var host = await StartAsync(Config(TimeSpan.FromSeconds(30)), app.EndPoint);

        using var client = await ConnectAsync(host.AddressOf(listener)!);
        await client.SendAsync("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"u8.ToArray()).WaitAsync(Timeout);

        var response = await ReadToEndAsync(client);
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", response, StringComparison.Ordinal);
        Assert.Contains("app GET /x\n", response, StringComparison.Ordinal);
        var metrics = await MetricsAsync(host);
        Assert.Contains($"proxy_detect_total{{listener=\"{listener}\",protocol=\"http1\"}} 1", metrics, StringComparison.Ordinal);
        Assert.Contains($"proxy_http_requests_total{{listener=\"{listener}\",service=\"passthrough\"", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_ServerSpeaksFirstOnOpaquePort_BannerArrivesWithoutWaitingForTimeout()
    {
        await using var banner = new BannerServer();
        var host = await StartAsync(Config(TimeSpan.FromSeconds(30), banner.EndPoint.Port), banner.EndPoint);

        var watch = Stopwatch.StartNew();
        using var client = await ConnectAsync(host.AddressOf("outbound")!);
        var received = await ReadExactlyAsync(client, BannerServer.Banner.Length, TimeSpan.FromSeconds(10));

        Assert.Equal(BannerServer.Banner, Encoding.ASCII.GetString(received));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"banner after {watch.Elapsed}");
        Assert.DoesNotContain("proxy_detect_total{", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_ServerSpeaksFirstOnOtherPort_BannerArrivesAfterDetectionTimeout()
    {
        await using var banner = new BannerServer();
        var host = await StartAsync(Config(TimeSpan.FromMilliseconds(300)), banner.EndPoint);

        var watch = Stopwatch.StartNew();
        using var client = await ConnectAsync(host.AddressOf("outbound")!);
        var received = await ReadExactlyAsync(client, BannerServer.Banner.Length, Timeout);

        Assert.Equal(BannerServer.Banner, Encoding.ASCII.GetString(received));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(250), $"banner after only {watch.Elapsed}: detection did not wait");
        Assert.Contains("proxy_detect_total{listener=\"outbound\",protocol=\"timeout\"} 1", await MetricsAsync(host), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExplicitListener_NoDetection()
    {
        var app = new IdentifyingServer("app");
        _disposables.Add(app);
        var config = Config(TimeSpan.FromSeconds(30)) with
        {
            Services = [new ServiceConfig("svc", [], [app.EndPoint])],
            Listeners = [new ListenerConfig("svc-in", new IPEndPoint(IPAddress.Loopback, 0), "svc")],
        };
        var host = await StartAsync(config, app.EndPoint);

        using var client = await ConnectAsync(host.AddressOf("svc-in")!);
        await client.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray()).WaitAsync(Timeout);
        client.Shutdown(SocketShutdown.Send);

        Assert.Equal("app: GET / HTTP/1.1\r\n\r\n", await ReadToEndAsync(client));
        Assert.DoesNotContain("proxy_detect_total{", await MetricsAsync(host), StringComparison.Ordinal);
    }

    private static async Task<Socket> ConnectAsync(EndPoint endPoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(Timeout);
        return socket;
    }

    private static async Task<string> ReadToEndAsync(Socket socket)
    {
        var buffer = new byte[4096];
        var total = 0;
        int n;
        while ((n = await socket.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None).AsTask().WaitAsync(Timeout)) > 0)
        {
            total += n;
        }

        return Encoding.ASCII.GetString(buffer, 0, total);
    }

    private static async Task<byte[]> ReadExactlyAsync(Socket socket, int count, TimeSpan timeout)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(timeout);
            Assert.NotEqual(0, n);
            read += n;
        }

        return buffer;
    }

    /// <summary>A server-speaks-first server (like SMTP or MySQL): sends a banner on accept, then reads to EOF.</summary>
    private sealed class BannerServer : IAsyncDisposable
    {
        public const string Banner = "220 banner ready\r\n";

        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly Task _accepting;

        public BannerServer()
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(16);
            EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
            _accepting = AcceptLoopAsync();
        }

        public IPEndPoint EndPoint { get; }

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (true)
                {
                    var socket = await _listener.AcceptAsync();
                    _ = ServeAsync(socket);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }

        private static async Task ServeAsync(Socket socket)
        {
            using (socket)
            {
                try
                {
                    await socket.SendAsync(Encoding.ASCII.GetBytes(Banner));
                    var buffer = new byte[1024];
                    while (await socket.ReceiveAsync(buffer) > 0)
                    {
                    }
                }
                catch (SocketException)
                {
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Dispose();
            await _accepting.WaitAsync(Timeout);
        }
    }
}

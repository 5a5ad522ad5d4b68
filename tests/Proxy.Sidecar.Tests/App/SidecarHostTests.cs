using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Balancing;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.App;

/// <summary>The composed sidecar in-process: listeners on 127.0.0.1:0, admin endpoints, routing of captured connections.</summary>
public sealed class SidecarHostTests : IAsyncLifetime
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

    private async Task<SidecarHost> StartAsync(ProxyConfig config, IOriginalDestinationResolver? resolver = null)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance, resolver ?? new FixedOriginalDestinationResolver(new IPEndPoint(IPAddress.Loopback, 1)));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private IdentifyingServer Server(string name)
    {
        var server = new IdentifyingServer(name);
        _disposables.Add(server);
        return server;
    }

    private static ProxyConfig BaseConfig() => new()
    {
        OutboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        InboundListen = new IPEndPoint(IPAddress.Loopback, 0),
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
    };

    private static async Task<string> ExchangeAsync(EndPoint proxy, string message)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(proxy).WaitAsync(Timeout);
        await client.SendAsync(Encoding.ASCII.GetBytes(message + "\n")).WaitAsync(Timeout);
        client.Shutdown(SocketShutdown.Send);
        var buffer = new byte[4096];
        var total = 0;
        int n;
        while ((n = await client.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None).AsTask().WaitAsync(Timeout)) > 0)
        {
            total += n;
        }

        return Encoding.ASCII.GetString(buffer, 0, total);
    }

    private static async Task<string> HttpGetAsync(EndPoint admin, string path)
    {
        using var http = new HttpClient { Timeout = Timeout };
        var response = await http.GetAsync(new Uri($"http://{admin}{path}"));
        return $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
    }

    [Fact]
    public async Task Admin_ReadyConfigAndUnknownPath()
    {
        var host = await StartAsync(BaseConfig());
        var admin = host.AddressOf("admin")!;
        Assert.Equal("200 ready\n", await HttpGetAsync(admin, "/ready"));
        var config = await HttpGetAsync(admin, "/config");
        Assert.StartsWith("200 {", config, StringComparison.Ordinal);
        Assert.Contains("\"outboundListen\": \"127.0.0.1:0\"", config, StringComparison.Ordinal);
        Assert.StartsWith("404 no admin endpoint at /nope", await HttpGetAsync(admin, "/nope"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExplicitListener_RoundRobinsAcrossEndpoints_AndCountsInMetrics()
    {
        var a = Server("a");
        var b = Server("b");
        var config = BaseConfig() with
        {
            Services = [new ServiceConfig("echo", [], [a.EndPoint, b.EndPoint])],
            Listeners = [new ListenerConfig("echo-in", new IPEndPoint(IPAddress.Loopback, 0), "echo")],
        };
        var host = await StartAsync(config);
        var listener = host.AddressOf("echo-in")!;
        var answers = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            answers.Add(await ExchangeAsync(listener, $"hello {i}"));
        }

        Assert.Equal(["a: hello 0\n", "b: hello 1\n", "a: hello 2\n", "b: hello 3\n"], answers);
        var metrics = await HttpGetAsync(host.AddressOf("admin")!, "/metrics");
        Assert.Contains("proxy_tcp_connections_opened_total{listener=\"echo-in\",service=\"echo\"} 4", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_bytes_to_upstream_total{listener=\"echo-in\",service=\"echo\"} 32", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExplicitListener_RingHashOnSourceIp_OneClientStaysOnOneEndpoint()
    {
        var a = Server("a");
        var b = Server("b");
        var config = BaseConfig() with
        {
            Services = [new ServiceConfig("echo", [], [a.EndPoint, b.EndPoint]) { Balancer = BalancerKind.RingHash, HashOn = HashOn.SourceIp }],
            Listeners = [new ListenerConfig("echo-in", new IPEndPoint(IPAddress.Loopback, 0), "echo")],
        };
        var host = await StartAsync(config);
        var listener = host.AddressOf("echo-in")!;
        var first = await ExchangeAsync(listener, "x");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(first, await ExchangeAsync(listener, "x"));
        }
    }

    [Fact]
    public async Task ExplicitListener_LeastRequest_AvoidsTheEndpointWithAnOpenConnection()
    {
        var a = Server("a");
        var b = Server("b");
        var config = BaseConfig() with
        {
            Services = [new ServiceConfig("echo", [], [a.EndPoint, b.EndPoint]) { Balancer = BalancerKind.LeastRequest }],
            Listeners = [new ListenerConfig("echo-in", new IPEndPoint(IPAddress.Loopback, 0), "echo")],
        };
        var host = await StartAsync(config);
        var listener = host.AddressOf("echo-in")!;
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await held.ConnectAsync(listener).WaitAsync(Timeout);

        // The gauge goes up in the same synchronous step that counts the connection on its endpoint.
        var deadline = DateTime.UtcNow + Timeout;
        while (!(await HttpGetAsync(host.AddressOf("admin")!, "/metrics")).Contains("proxy_tcp_connections_active{listener=\"echo-in\",service=\"echo\"} 1", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, "the held connection was never counted as active");
            await Task.Delay(10);
        }

        var other = await ExchangeAsync(listener, "y");
        await held.SendAsync("x\n"u8.ToArray()).WaitAsync(Timeout);
        held.Shutdown(SocketShutdown.Send);
        var buffer = new byte[64];
        var total = 0;
        int n;
        while ((n = await held.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None).AsTask().WaitAsync(Timeout)) > 0)
        {
            total += n;
        }

        var heldAnswer = Encoding.ASCII.GetString(buffer, 0, total);
        Assert.NotEqual(heldAnswer[0], other[0]);
        Assert.Equal("y\n", other[3..]);
    }

    [Fact]
    public async Task Outbound_VirtualAddress_GoesToServiceEndpoint_OtherDestinationPassesThrough()
    {
        var endpoint = Server("svc");
        var direct = Server("direct");
        var virtualAddress = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 80);
        var resolver = new SwitchableResolver(virtualAddress);
        var config = BaseConfig() with { Services = [new ServiceConfig("web", [virtualAddress], [endpoint.EndPoint])] };
        var host = await StartAsync(config, resolver);
        var outbound = host.AddressOf("outbound")!;

        Assert.Equal("svc: to the service\n", await ExchangeAsync(outbound, "to the service"));
        resolver.Destination = direct.EndPoint;
        Assert.Equal("direct: passed through\n", await ExchangeAsync(outbound, "passed through"));
        var metrics = await HttpGetAsync(host.AddressOf("admin")!, "/metrics");
        Assert.Contains("proxy_tcp_connections_opened_total{listener=\"outbound\",service=\"web\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_tcp_connections_opened_total{listener=\"outbound\",service=\"passthrough\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inbound_PassesThroughToOriginalDestination()
    {
        var app = Server("app");
        var host = await StartAsync(BaseConfig(), new SwitchableResolver(app.EndPoint));
        Assert.Equal("app: inbound call\n", await ExchangeAsync(host.AddressOf("inbound")!, "inbound call"));
    }

    [Fact]
    public async Task Outbound_DestinationIsTheProxyItself_ResetNotLooped()
    {
        var resolver = new SwitchableResolver(new IPEndPoint(IPAddress.Loopback, 1));
        var host = await StartAsync(BaseConfig(), resolver);
        var outbound = (IPEndPoint)host.AddressOf("outbound")!;
        resolver.Destination = outbound;
        var error = await Assert.ThrowsAsync<SocketException>(() => ExchangeAsync(outbound, "loop?"));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
        var metrics = await HttpGetAsync(host.AddressOf("admin")!, "/metrics");
        Assert.Contains("cause=\"no_original_destination\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Outbound_UpstreamRefused_ClientReset_CountedAsRefused()
    {
        // A port that was just free: nothing listens there.
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var closed = (IPEndPoint)probe.LocalEndPoint!;
        probe.Dispose();
        var host = await StartAsync(BaseConfig(), new SwitchableResolver(closed));
        var error = await Assert.ThrowsAsync<SocketException>(() => ExchangeAsync(host.AddressOf("outbound")!, "anyone?"));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
        var metrics = await HttpGetAsync(host.AddressOf("admin")!, "/metrics");
        Assert.Contains("cause=\"refused\"} 1", metrics, StringComparison.Ordinal);
    }

    private sealed class SwitchableResolver(IPEndPoint destination) : IOriginalDestinationResolver
    {
        public volatile IPEndPoint Destination = destination;

        public bool TryResolve(Socket accepted, out Proxy.Core.Addresses.OriginalDestination result, out string? error)
        {
            result = new Proxy.Core.Addresses.OriginalDestination(Destination);
            error = null;
            return true;
        }
    }
}

/// <summary>A TCP server on 127.0.0.1:0 that reads to EOF and answers "name: what it read", then closes.</summary>
internal sealed class IdentifyingServer : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public IdentifyingServer(string name)
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accepting = AcceptLoopAsync(name);
    }

    public IPEndPoint EndPoint { get; }

    private async Task AcceptLoopAsync(string name)
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptAsync(_stop.Token);
                _ = ServeAsync(socket, name);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private static async Task ServeAsync(Socket socket, string name)
    {
        using (socket)
        {
            try
            {
                var received = new MemoryStream();
                var buffer = new byte[4096];
                int n;
                while ((n = await socket.ReceiveAsync(buffer)) > 0)
                {
                    received.Write(buffer, 0, n);
                }

                await socket.SendAsync(Encoding.ASCII.GetBytes($"{name}: ").Concat(received.ToArray()).ToArray());
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accepting;
        _stop.Dispose();
    }
}

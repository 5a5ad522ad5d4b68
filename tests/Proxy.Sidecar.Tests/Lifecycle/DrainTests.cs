using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Admin;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Tests.Lifecycle;

/// <summary>
/// Graceful drain of a composed sidecar (admin POST /drain, POST /quitquitquit): real Kestrel upstream, real sockets,
/// HTTP/1.1 keep-alive clients on raw sockets (so the test sees each connection's Connection field and close) and an
/// HTTP/2 (h2c) HttpClient, opaque TCP through to an echo server.
/// </summary>
public sealed class DrainTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _disposables = [];
    private SlowUpstream _upstream = null!;
    private EchoServer _echo = null!;

    public async Task InitializeAsync()
    {
        _upstream = await SlowUpstream.StartAsync();
        _echo = new EchoServer();
        _disposables.Add(_upstream);
        _disposables.Add(_echo);
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private ProxyConfig Config(TimeSpan drainTimeout) => new()
    {
        OutboundListen = null,
        InboundListen = null,
        AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
        DrainTimeout = drainTimeout,
        Services =
        [
            new ServiceConfig("web", [], [_upstream.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http1 },
            new ServiceConfig("db", [], [_echo.EndPoint]),
        ],
        Listeners =
        [
            new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "web") { Protocol = ListenerProtocol.Http },
            new ListenerConfig("db", new IPEndPoint(IPAddress.Loopback, 0), "db"),
        ],
    };

    private async Task<SidecarHost> StartAsync(ProxyConfig config)
    {
        var host = new SidecarHost(config, NullLoggerFactory.Instance);
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static HttpClient AdminClient() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static Uri Url(SidecarHost host, string listener, string path) => new($"http://{host.AddressOf(listener)}{path}");

    private static async Task<(int Status, string Body)> AdminAsync(SidecarHost host, HttpMethod method, string path)
    {
        using var http = AdminClient();
        using var response = await http.SendAsync(new HttpRequestMessage(method, Url(host, "admin", path))).WaitAsync(Timeout);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The sum of a counter's series whose labels contain <paramref name="labels"/>.</summary>
    private static long Sum(string metrics, string name, string labels = "")
    {
        long total = 0;
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && line.Contains(labels, StringComparison.Ordinal))
            {
                total += long.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return total;
    }

    /// <summary>Releases the warm-up wait however a client loop ends, so a failing loop fails the test instead of hanging it.</summary>
    private readonly struct WarmGuard(TaskCompletionSource warmed) : IDisposable
    {
        public void Dispose() => warmed.TrySetResult();
    }

    private sealed class DrainedConnectionException() : Exception("the client tried to open a second connection: its first one was drained");

    private static bool IsDrained(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is DrainedConnectionException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Load while the drain happens: 4 HTTP/1.1 keep-alive clients (one raw connection each) and one HTTP/2 client with 8
    /// concurrent request loops over its one connection keep sending until the proxy tells them to stop: a response with
    /// <c>Connection: close</c> (HTTP/1.1), or GOAWAY, after which HttpClient wants a new connection (HTTP/2; the test's
    /// connect callback refuses a second connection, so such a request never reaches the network). No request may fail,
    /// every request the proxy counted reached its client, each HTTP/1.1 connection ends with a clean FIN, nothing is cut,
    /// and the host stops long before the drain timeout.
    /// </summary>
    [Fact]
    public async Task Drain_UnderLoad_Http1AndHttp2_ZeroFailedRequests_ConnectionsClosedCleanly_HostStops()
    {
        var host = await StartAsync(Config(TimeSpan.FromSeconds(20)));
        var edge = host.AddressOf("edge")!;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var warm = new List<TaskCompletionSource>();

        async Task<(int Ok, bool Clean)> Http1Loop(TaskCompletionSource warmed)
        {
            using var client = await RawHttp1Client.ConnectAsync(edge);
            using var unblock = new WarmGuard(warmed);
            var ok = 0;
            while (true)
            {
                try
                {
                    var (status, close, body) = await client.GetAsync("/work?ms=20", Timeout);
                    if (status == 200 && body == "done 20")
                    {
                        ok++;
                    }
                    else
                    {
                        failures.Enqueue($"HTTP/1.1: {status} {body}");
                    }

                    if (ok == 3)
                    {
                        warmed.TrySetResult();
                    }

                    if (close)
                    {
                        return (ok, await client.ClosedCleanlyAsync(Timeout));
                    }
                }
                catch (Exception e) when (e is IOException or SocketException)
                {
                    failures.Enqueue($"HTTP/1.1: {e.Message}");
                    warmed.TrySetResult();
                    return (ok, false);
                }
            }
        }

        var connections = 0;
        using var http2 = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectCallback = async (context, cancellationToken) =>
            {
                if (Interlocked.Increment(ref connections) > 1)
                {
                    throw new DrainedConnectionException();
                }

                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        })
        { Timeout = Timeout };

        async Task<int> Http2Loop(TaskCompletionSource warmed)
        {
            using var unblock = new WarmGuard(warmed);
            var ok = 0;
            while (true)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{edge}/work?ms=20") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                    using var response = await http2.SendAsync(request).WaitAsync(Timeout);
                    var body = await response.Content.ReadAsStringAsync();
                    if (response.StatusCode == HttpStatusCode.OK && body == "done 20" && response.Version == HttpVersion.Version20)
                    {
                        ok++;
                    }
                    else
                    {
                        failures.Enqueue($"HTTP/2: {(int)response.StatusCode} {body}");
                    }

                    if (ok == 3)
                    {
                        warmed.TrySetResult();
                    }
                }
                catch (HttpRequestException e) when (IsDrained(e))
                {
                    return ok;
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TimeoutException)
                {
                    failures.Enqueue($"HTTP/2: {e}");
                    warmed.TrySetResult();
                    return ok;
                }
            }
        }

        var http1 = new List<Task<(int Ok, bool Clean)>>();
        var h2 = new List<Task<int>>();
        for (var i = 0; i < 4; i++)
        {
            var warmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            warm.Add(warmed);
            http1.Add(Http1Loop(warmed));
        }

        for (var i = 0; i < 8; i++)
        {
            var warmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            warm.Add(warmed);
            h2.Add(Http2Loop(warmed));
        }

        await Task.WhenAll(warm.Select(static w => w.Task)).WaitAsync(Timeout);
        Assert.Empty(failures);

        var (status, body) = await AdminAsync(host, HttpMethod.Post, "/drain");
        Assert.Equal(200, status);
        Assert.StartsWith("draining: ", body, StringComparison.Ordinal);
        Assert.Equal((503, "not ready: draining\n"), await AdminAsync(host, HttpMethod.Get, "/ready"));

        var result = await host.Stopped.WaitAsync(Timeout);
        var http1Results = await Task.WhenAll(http1).WaitAsync(Timeout);
        var h2Results = await Task.WhenAll(h2).WaitAsync(Timeout);

        Assert.Empty(failures);
        Assert.All(http1Results, static r => Assert.True(r.Clean, "an HTTP/1.1 connection did not end with a clean close after Connection: close"));
        Assert.True(Volatile.Read(ref connections) > 1, "the HTTP/2 client never needed a new connection: no GOAWAY reached it");
        Assert.Equal(StopReason.Drain, result.Reason);
        Assert.Equal(0, result.Cut);
        Assert.True(result.OpenAtStart >= 5, $"open at start: {result.OpenAtStart}");
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(10), $"the drain took {result.Elapsed}");

        // Every request the proxy completed was received by a client (none lost in the drain).
        var delivered = http1Results.Sum(static r => r.Ok) + h2Results.Sum();
        var metrics = (await AdminAsync(host, HttpMethod.Get, "/metrics")).Body;
        Assert.Equal(delivered, Sum(metrics, "proxy_http_requests_total", "listener=\"edge\""));
        Assert.Equal(delivered, Sum(metrics, "proxy_http_requests_total", "status_class=\"2xx\""));
        Assert.Equal(1, Sum(metrics, "proxy_drains_total", "reason=\"drain\""));
        Assert.Equal(0, Sum(metrics, "proxy_drain_connections_cut_total"));

        // The listeners no longer accept.
        using var late = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAsync<SocketException>(async () => await late.ConnectAsync(edge).WaitAsync(Timeout));
    }

    /// <summary>
    /// HTTP/1.1 during a drain: a request in flight is answered in full with <c>Connection: close</c>, then the proxy
    /// closes (FIN); an idle keep-alive connection is closed cleanly without a response.
    /// </summary>
    [Fact]
    public async Task Drain_Http1_InFlightAnsweredWithConnectionClose_IdleClosedCleanly()
    {
        var host = await StartAsync(Config(TimeSpan.FromSeconds(20)));
        var edge = host.AddressOf("edge")!;
        using var idle = await RawHttp1Client.ConnectAsync(edge);
        var first = await idle.GetAsync("/work?ms=0", Timeout);
        Assert.Equal((200, false), (first.Status, first.Close));

        using var busy = await RawHttp1Client.ConnectAsync(edge);
        Assert.False((await busy.GetAsync("/work?ms=0", Timeout)).Close);
        var inFlight = busy.GetAsync("/work?ms=1500", Timeout);

        host.Lifecycle.RequestStop(StopReason.Drain);
        var (status, close, body) = await inFlight;
        Assert.Equal((200, true, "done 1500"), (status, close, body));
        Assert.True(await busy.ClosedCleanlyAsync(Timeout));
        Assert.True(await idle.ClosedCleanlyAsync(Timeout));

        var result = await host.Stopped.WaitAsync(Timeout);
        Assert.Equal(0, result.Cut);
        Assert.Equal(2, result.OpenAtStart);
    }

    /// <summary>
    /// Opaque TCP has no way to be told: connections are left to finish up to the drain timeout. One that ends during the
    /// drain is not cut; one still open when the timeout passes is closed by the proxy and counted (result, metric).
    /// /ready answers 503 all along, the admin listener keeps answering.
    /// </summary>
    [Fact]
    public async Task Drain_Timeout_CutsLongTcpConnection_NotOneThatEnds()
    {
        var timeout = TimeSpan.FromMilliseconds(1500);
        var host = await StartAsync(Config(timeout));
        using var finishing = new TcpClient();
        using var lingering = new TcpClient();
        await finishing.ConnectAsync((IPEndPoint)host.AddressOf("db")!).WaitAsync(Timeout);
        await lingering.ConnectAsync((IPEndPoint)host.AddressOf("db")!).WaitAsync(Timeout);
        await EchoAsync(finishing, "one");
        await EchoAsync(lingering, "two");

        Assert.Equal(200, (await AdminAsync(host, HttpMethod.Post, "/drain")).Status);
        Assert.Equal((503, "not ready: draining\n"), await AdminAsync(host, HttpMethod.Get, "/ready"));

        // Still forwarding during the drain, then the client ends it.
        await EchoAsync(finishing, "three");
        var finishingStream = finishing.GetStream();
        finishing.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await finishingStream.ReadAsync(new byte[16]).AsTask().WaitAsync(Timeout));

        var result = await host.Stopped.WaitAsync(Timeout);
        Assert.Equal(2, result.OpenAtStart);
        Assert.Equal(1, result.Cut);
        Assert.True(result.Elapsed >= timeout - TimeSpan.FromMilliseconds(100), $"the drain took {result.Elapsed}");
        Assert.True(result.Elapsed < timeout + TimeSpan.FromSeconds(5), $"the drain took {result.Elapsed}");

        // The proxy closed the lingering connection.
        var buffer = new byte[16];
        try
        {
            Assert.Equal(0, await lingering.GetStream().ReadAsync(buffer).AsTask().WaitAsync(Timeout));
        }
        catch (IOException)
        {
            // Closed with a reset: as good.
        }

        var metrics = (await AdminAsync(host, HttpMethod.Get, "/metrics")).Body;
        Assert.Equal(1, Sum(metrics, "proxy_drain_connections_cut_total", "reason=\"drain\""));
    }

    /// <summary>POST /quitquitquit drains promptly: bounded by 5 s however long the drain timeout; GET is refused (405) and starts nothing.</summary>
    [Fact]
    public async Task QuitQuitQuit_PostOnly_DrainsWithinQuitTimeout()
    {
        var host = await StartAsync(Config(TimeSpan.FromMinutes(10)));
        using var lingering = new TcpClient();
        await lingering.ConnectAsync((IPEndPoint)host.AddressOf("db")!).WaitAsync(Timeout);
        await EchoAsync(lingering, "job");

        using (var http = AdminClient())
        {
            using var get = await http.GetAsync(Url(host, "admin", "/quitquitquit")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
            Assert.Equal("POST", get.Content.Headers.Allow.Single());
        }

        Assert.False(host.Stopped.IsCompleted);
        Assert.Equal(200, (await AdminAsync(host, HttpMethod.Get, "/ready")).Status);

        var (status, body) = await AdminAsync(host, HttpMethod.Post, "/quitquitquit");
        Assert.Equal(200, status);
        Assert.StartsWith("quitting: ", body, StringComparison.Ordinal);

        var result = await host.Stopped.WaitAsync(Timeout);
        Assert.Equal(StopReason.Quit, result.Reason);
        Assert.Equal(1, result.Cut);
        Assert.True(result.Elapsed < SidecarLifecycle.QuitTimeout + TimeSpan.FromSeconds(5), $"the quit took {result.Elapsed}");
    }

    private static async Task EchoAsync(TcpClient client, string text)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        var stream = client.GetStream();
        await stream.WriteAsync(bytes).AsTask().WaitAsync(Timeout);
        var back = new byte[bytes.Length];
        await stream.ReadExactlyAsync(back).AsTask().WaitAsync(Timeout);
        Assert.Equal(text, Encoding.ASCII.GetString(back));
    }
}

using System.Net;
using System.Net.Sockets;
using DnsClient;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Sidecar.App;
using Xunit.Abstractions;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// DNS discovery through a real sidecar (explicit HTTP listener) against a real DNS server (dnsmasq, <see cref="Dnsmasq"/>)
/// whose records change during the test: endpoints added and removed under load with zero failed requests, a removed
/// endpoint gets no new requests and its pooled connections are closed, SRV records (ports, weights, priorities), a
/// DNS server that stops answering leaves the last endpoints in place, NXDOMAIN empties the service (503 no_endpoint).
/// </summary>
public sealed class DnsDiscoveryTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    [SkippableFact]
    public async Task EndpointsAddedAndRemovedUnderLoad_ZeroFailedRequests_RemovedGetsNoNewRequests()
    {
        var (u1, u2, u3) = ThreeUpstreamsOnOnePort();
        var dns = await DnsAsync(Hosts(u1, u2));
        var host = await SidecarAsync(dns, new ServiceDnsConfig("web.test") { Port = u1.EndPoint.Port, MinRefresh = TimeSpan.FromMilliseconds(200), MaxRefresh = TimeSpan.FromMilliseconds(500) });
        var web = host.Services!.FindByName("web")!;
        Assert.Equal(2, web.EndpointCount);

        await using var load = new Load(host, concurrency: 4);
        await load.WaitForAsync(() => u1.Requests > 0 && u2.Requests > 0);

        // Added: 127.0.0.3 gets traffic once the sidecar's next lookup sees it.
        await dns.SetHostsAsync(Hosts(u1, u2, u3), "web.test", 3);
        await load.WaitForAsync(() => u3.Requests > 0);
        Assert.Equal(3, web.EndpointCount);

        // Removed: once the set no longer has 127.0.0.1 and every client finished a request after that (so nothing
        // picked before the swap is still on its way), 127.0.0.1 sees no new request.
        await dns.SetHostsAsync(Hosts(u2, u3), "web.test", 2);
        await load.WaitForAsync(() => !HasEndpoint(web, u1.EndPoint));
        await load.WaitForEveryClientAsync();
        var u1Final = u1.Requests;
        var (before2, before3) = (u2.Requests, u3.Requests);
        await load.WaitForAsync(() => u2.Requests > before2 + 50 && u3.Requests > before3 + 50);
        Assert.Equal(u1Final, u1.Requests);

        // And back: the same address returns as a new endpoint, with a fresh pool entry.
        await dns.SetHostsAsync(Hosts(u1, u2, u3), "web.test", 3);
        await load.WaitForAsync(() => u1.Requests > u1Final);

        var (ok, failed, firstFailure) = await load.StopAsync();
        output.WriteLine($"{ok} requests succeeded, {failed} failed, across 3 endpoint changes (u1 {u1.Requests}, u2 {u2.Requests}, u3 {u3.Requests} requests; u1 frozen at {u1Final} while removed)");
        Assert.True(failed == 0, $"{failed} of {ok + failed} requests failed during the endpoint changes; first: {firstFailure}");
        Assert.True(ok > 200, $"only {ok} requests ran");

        var metrics = await MetricsAsync(host);
        Assert.Matches("proxy_dns_lookups_total\\{service=\"web\",result=\"success\"\\} [1-9]", metrics);
        Assert.Contains("proxy_service_endpoints{service=\"web\"} 3", metrics, StringComparison.Ordinal);

        // The removed endpoint's idle keep-alive connections were closed by the pool, not kept.
        Assert.Matches("proxy_pool_connections_discarded_total\\{cause=\"retired\"\\} [1-9]", metrics);
    }

    [SkippableFact]
    public async Task DnsServerStopsAnswering_LastEndpointsKept_ThenFollowsAgain()
    {
        var (u1, u2, _) = ThreeUpstreamsOnOnePort();
        var dns = await DnsAsync(Hosts(u1, u2));
        var host = await SidecarAsync(dns, new ServiceDnsConfig("web.test") { Port = u1.EndPoint.Port, MinRefresh = TimeSpan.FromMilliseconds(200), MaxRefresh = TimeSpan.FromMilliseconds(300) }, dnsTimeout: TimeSpan.FromMilliseconds(200));
        var web = host.Services!.FindByName("web")!;
        Assert.Equal(2, web.EndpointCount);

        await dns.StopAsync();
        await WaitForAsync(async () => (await MetricsAsync(host)).Contains("result=\"timeout\"} 2", StringComparison.Ordinal) || (await MetricsAsync(host)).Contains("result=\"timeout\"} 3", StringComparison.Ordinal));
        Assert.Equal(2, web.EndpointCount);
        using var http = Client();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(u1.Requests > 0 && u2.Requests > 0);

        // DNS is back with one record: the service follows.
        await dns.RestartAsync(Hosts(u2));
        await WaitForAsync(() => Task.FromResult(web.EndpointCount == 1));
        var u1Before = u1.Requests;
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(u1Before, u1.Requests);
    }

    [SkippableFact]
    public async Task NameGone_NxDomain_ServiceAnswers503NoEndpointNamingDns_ThenComesBack()
    {
        var (u1, _, _) = ThreeUpstreamsOnOnePort();
        var dns = await DnsAsync(Hosts(u1));
        var host = await SidecarAsync(dns, new ServiceDnsConfig("web.test") { Port = u1.EndPoint.Port, MinRefresh = TimeSpan.FromMilliseconds(200), MaxRefresh = TimeSpan.FromMilliseconds(300) });
        var web = host.Services!.FindByName("web")!;

        await dns.SetHostsAsync("", "web.test", 0);
        await WaitForAsync(() => Task.FromResult(web.EndpointCount == 0));
        using var http = Client();
        using (var response = await http.GetAsync(Url(host, "/x")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("no_endpoint", Assert.Single(response.Headers.GetValues("x-proxy-error")));
            var body = await response.Content.ReadAsStringAsync();
            Assert.Contains("service web has no endpoints (DNS: web.test does not exist (NXDOMAIN))", body, StringComparison.Ordinal);
        }

        Assert.Matches("proxy_dns_lookups_total\\{service=\"web\",result=\"nxdomain\"\\} [1-9]", await MetricsAsync(host));
        await dns.SetHostsAsync(Hosts(u1), "web.test", 1);
        await WaitForAsync(() => Task.FromResult(web.EndpointCount == 1));
        using (var response = await http.GetAsync(Url(host, "/x")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [SkippableFact]
    public async Task OpaqueTcp_NoEndpoints_ConnectionReset_CountedAsNoEndpoint()
    {
        var (u1, _, _) = ThreeUpstreamsOnOnePort();
        var dns = await DnsAsync("");
        var host = await SidecarAsync(dns, new ServiceDnsConfig("web.test") { Port = u1.EndPoint.Port, MinRefresh = TimeSpan.FromMilliseconds(200), MaxRefresh = TimeSpan.FromMilliseconds(300) }, protocol: ListenerProtocol.Tcp);
        Assert.Equal(0, host.Services!.FindByName("web")!.EndpointCount);

        using (var client = new System.Net.Sockets.TcpClient())
        {
            var buffer = new byte[64];

            // The proxy accepts and resets at once: the reset may even reach the client before its connect call has
            // seen the handshake complete (then the connect itself fails with a reset), or before the write is made.
            // All three are inside.
            var ex = await Record.ExceptionAsync(async () =>
            {
                await client.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
                var stream = client.GetStream();
                await stream.WriteAsync("GET / HTTP/1.1\r\nHost: web\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
                var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
                Assert.Equal(0, read);
            });

            // Reset (or at least closed without a byte): never an answer from nowhere.
            Assert.True(ex is null or IOException or SocketException { SocketErrorCode: SocketError.ConnectionReset }, ex?.ToString());
        }

        Assert.Matches("proxy_tcp_connect_failures_total\\{listener=\"edge\",service=\"web\",cause=\"no_endpoint\"\\} 1", await MetricsAsync(host));
        Assert.Equal(0, u1.Requests);

        // DNS gets the record: connections go through.
        await dns.SetHostsAsync(Hosts(u1), "web.test", 1);
        await WaitForAsync(() => Task.FromResult(host.Services!.FindByName("web")!.EndpointCount == 1));
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync((IPEndPoint)host.AddressOf("edge")!).WaitAsync(Timeout);
            var stream = client.GetStream();
            await stream.WriteAsync("GET / HTTP/1.1\r\nHost: web\r\n\r\n"u8.ToArray()).AsTask().WaitAsync(Timeout);
            var buffer = new byte[256];
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
            Assert.StartsWith("HTTP/1.1 200", System.Text.Encoding.ASCII.GetString(buffer, 0, read), StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public async Task Srv_PortsAndWeightsFromRecords_LowestPriorityOnly_TargetRemovedFollows()
    {
        var a = Upstream(new IPEndPoint(IPAddress.Loopback, 0), "a");
        var b = Upstream(new IPEndPoint(IPAddress.Loopback, 0), "b");
        var c = Upstream(new IPEndPoint(IPAddress.Loopback, 0), "c");
        string[] srv =
        [
            $"--srv-host=_http._tcp.web.test,a.test,{a.EndPoint.Port},0,1",
            $"--srv-host=_http._tcp.web.test,b.test,{b.EndPoint.Port},0,3",
            $"--srv-host=_http._tcp.web.test,c.test,{c.EndPoint.Port},1,100",
        ];
        var dns = await DnsAsync("127.0.0.1 a.test\n127.0.0.1 b.test\n127.0.0.1 c.test\n", srv);
        await dns.WaitForAnswersAsync("_http._tcp.web.test", QueryType.SRV, 3);
        var host = await SidecarAsync(dns, new ServiceDnsConfig("_http._tcp.web.test") { Type = DnsRecordKind.Srv, MinRefresh = TimeSpan.FromMilliseconds(200), MaxRefresh = TimeSpan.FromMilliseconds(300) });
        var web = host.Services!.FindByName("web")!;
        Assert.Equal(2, web.EndpointCount);
        Assert.Equal(1, WeightOf(web, a.EndPoint));
        Assert.Equal(3, WeightOf(web, b.EndPoint));

        using var http = Client();
        for (var i = 0; i < 40; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Round-robin by weight 1:3; the priority-1 record is a backup, unused while priority 0 has targets.
        Assert.Equal(10, a.Requests);
        Assert.Equal(30, b.Requests);
        Assert.Equal(0, c.Requests);

        // b.test loses its address: its SRV record has no target left, so the set is a alone.
        await dns.SetHostsAsync("127.0.0.1 a.test\n127.0.0.1 c.test\n", "a.test", 1);
        await WaitForAsync(() => Task.FromResult(web.EndpointCount == 1));
        var bBefore = b.Requests;
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync(Url(host, $"/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(bBefore, b.Requests);
        Assert.Equal(15, a.Requests);
    }

    [SkippableFact]
    public async Task ConfigEndpoint_ShowsDnsSettings()
    {
        var (u1, _, _) = ThreeUpstreamsOnOnePort();
        var dns = await DnsAsync(Hosts(u1));
        var host = await SidecarAsync(dns, new ServiceDnsConfig("web.test") { Port = u1.EndPoint.Port });
        using var http = Client();
        var config = await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/config"));
        Assert.Contains($"\"dns\":{{\"servers\":\"{dns.EndPoint}\",\"timeout\":\"2s\"}}", config.Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Contains("\"name\":\"web.test\"", config.Replace(" ", "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    // ---- helpers ---------------------------------------------------------------------------------

    private ScriptedUpstream Upstream(IPEndPoint bind, string name)
    {
        var upstream = new ScriptedUpstream(bind, name);
        _disposables.Add(upstream);
        return upstream;
    }

    /// <summary>Upstreams on 127.0.0.1, .2 and .3, one port (A records carry no port).</summary>
    private (ScriptedUpstream, ScriptedUpstream, ScriptedUpstream) ThreeUpstreamsOnOnePort()
    {
        for (var attempt = 0; ; attempt++)
        {
            var first = Upstream(new IPEndPoint(IPAddress.Loopback, 0), "u1");
            var port = first.EndPoint.Port;
            try
            {
                return (first, Upstream(new IPEndPoint(IPAddress.Parse("127.0.0.2"), port), "u2"), Upstream(new IPEndPoint(IPAddress.Parse("127.0.0.3"), port), "u3"));
            }
            catch (System.Net.Sockets.SocketException) when (attempt < 5)
            {
                // That port is taken on .2 or .3: another one.
            }
        }
    }

    private static string Hosts(params ScriptedUpstream[] upstreams)
        => string.Concat(upstreams.Select(static u => $"{u.EndPoint.Address} web.test\n"));

    private async Task<Dnsmasq> DnsAsync(string hosts, params string[] extra)
    {
        var dns = await Dnsmasq.StartAsync(hosts, extra);
        _disposables.Add(dns);
        return dns;
    }

    private async Task<SidecarHost> SidecarAsync(Dnsmasq dns, ServiceDnsConfig serviceDns, TimeSpan? dnsTimeout = null, ListenerProtocol protocol = ListenerProtocol.Http)
    {
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Dns = new DnsConfig { Servers = [dns.EndPoint], Timeout = dnsTimeout ?? TimeSpan.FromSeconds(2) },
            Services = [new ServiceConfig("web", [], []) { Dns = serviceDns }],
            Listeners = [new ListenerConfig("edge", new IPEndPoint(IPAddress.Loopback, 0), "web") { Protocol = protocol }],
        };
        var host = new SidecarHost(config, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(new IPEndPoint(IPAddress.Loopback, 9)));
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    private static bool HasEndpoint(Service service, IPEndPoint endPoint)
    {
        foreach (var e in service.Endpoints)
        {
            if (e.Address.EndPoint.Equals(endPoint))
            {
                return true;
            }
        }

        return false;
    }

    private static int WeightOf(Service service, IPEndPoint endPoint)
    {
        foreach (var e in service.Endpoints)
        {
            if (e.Address.EndPoint.Equals(endPoint))
            {
                return e.Weight;
            }
        }

        return 0;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"condition not met within {Timeout}");
            }

            await Task.Delay(25);
        }
    }

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static Uri Url(SidecarHost host, string path) => new($"http://{host.AddressOf("edge")}{path}");

    private static async Task<string> MetricsAsync(SidecarHost host)
    {
        using var http = Client();
        return await http.GetStringAsync(new Uri($"http://{host.AddressOf("admin")}/metrics"));
    }

    /// <summary>Clients in a request loop through the sidecar (keep-alive), counting answers that are not 200.</summary>
    private sealed class Load : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task[] _clients;
        private readonly long[] _done;
        private long _ok;
        private long _failed;
        private string? _firstFailure;

        public Load(SidecarHost host, int concurrency)
        {
            _done = new long[concurrency];
            _clients = new Task[concurrency];
            for (var i = 0; i < concurrency; i++)
            {
                var index = i;
                _clients[i] = Task.Run(() => RunAsync(host, index));
            }
        }

        private async Task RunAsync(SidecarHost host, int index)
        {
            using var http = Client();
            var n = 0;
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await http.GetAsync(Url(host, $"/{index}/{n++}"));
                    var body = await response.Content.ReadAsStringAsync();
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref _ok);
                    }
                    else
                    {
                        Fail($"{(int)response.StatusCode} {body}");
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    Fail(e.Message);
                }

                Interlocked.Increment(ref _done[index]);
            }
        }

        private void Fail(string what)
        {
            Interlocked.Increment(ref _failed);
            Interlocked.CompareExchange(ref _firstFailure, what, null);
        }

        public async Task WaitForAsync(Func<bool> condition)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (!condition())
            {
                if (DateTime.UtcNow > deadline || _clients.Any(static c => c.IsCompleted))
                {
                    throw new TimeoutException($"condition not met within {Timeout} ({Volatile.Read(ref _ok)} ok, {Volatile.Read(ref _failed)} failed, first failure: {_firstFailure})");
                }

                await Task.Delay(10);
            }
        }

        /// <summary>Returns once every client finished at least one more request than now.</summary>
        public Task WaitForEveryClientAsync()
        {
            var marks = _done.Select(static (_, i) => i).Select(i => Volatile.Read(ref _done[i])).ToArray();
            return WaitForAsync(() => marks.Select((m, i) => Volatile.Read(ref _done[i]) > m).All(static x => x));
        }

        public async Task<(long Ok, long Failed, string? FirstFailure)> StopAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_clients).WaitAsync(Timeout);
            return (Volatile.Read(ref _ok), Volatile.Read(ref _failed), _firstFailure);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await _stop.CancelAsync();
                await Task.WhenAll(_clients).WaitAsync(Timeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            _stop.Dispose();
        }
    }
}

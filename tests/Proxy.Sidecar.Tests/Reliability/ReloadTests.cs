using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Tests.Lifecycle;
using Xunit.Abstractions;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// Config reload through a real sidecar started from a config file (explicit HTTP listener, admin listener): POST /reload
/// and file changes, routes and endpoints that change under keep-alive connections, invalid files, /config, what needs a
/// restart, a removed endpoint's in-flight request, and reloads during load over HTTP/1.1 and HTTP/2 with zero failures.
/// </summary>
public sealed partial class ReloadTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<IAsyncDisposable> _disposables = [];
    private readonly List<string> _files = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }

        foreach (var file in _files)
        {
            System.IO.File.Delete(file);
        }
    }

    private ScriptedUpstream Upstream(string name)
    {
        var upstream = new ScriptedUpstream(name);
        _disposables.Add(upstream);
        return upstream;
    }

    /// <summary>A config file: service <c>web</c> (and whatever else <paramref name="services"/> adds), listener <c>edge</c> with <paramref name="routes"/>.</summary>
    private static string ConfigFile(string services, string routes = "[]", string extraListeners = "")
        => $$"""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "127.0.0.1:0",
              "services": [ {{services}} ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "service": "web", "protocol": "http", "routes": {{routes}} }{{extraListeners}} ] }
            """;

    private static string Web(params IPEndPoint[] endpoints)
        => $$"""{ "name": "web", "endpoints": [{{string.Join(", ", endpoints.Select(e => $"\"{e}\""))}}], "upstreamProtocol": "http1" }""";

    /// <summary>Starts a sidecar from a config file; unwatched unless <paramref name="watch"/>, so each change is applied by the test's POST /reload.</summary>
    private async Task<(SidecarHost Host, string Path)> StartAsync(string json, bool watch = false)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"reload-{Guid.NewGuid():N}.json");
        _files.Add(path);
        await System.IO.File.WriteAllTextAsync(path, json);
        var flags = new Dictionary<string, string>();
        var loaded = ConfigLoader.Load(flags, json);
        Assert.True(loaded.Ok, string.Join("\n", loaded.Errors));
        var host = new SidecarHost(loaded.Config!, NullLoggerFactory.Instance, new FixedOriginalDestinationResolver(new IPEndPoint(IPAddress.Loopback, 9)), new ConfigSource(path, flags)) { WatchConfigFile = watch };
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return (host, path);
    }

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };

    private static async Task<(int Status, string Body)> AdminAsync(SidecarHost host, HttpMethod method, string path)
    {
        using var http = Client();
        using var response = await http.SendAsync(new HttpRequestMessage(method, $"http://{host.AddressOf("admin")}{path}")).WaitAsync(Timeout);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Writes the file and asks POST /reload.</summary>
    private static async Task<(int Status, string Body)> ReloadAsync(SidecarHost host, string path, string json)
    {
        await System.IO.File.WriteAllTextAsync(path, json);
        return await AdminAsync(host, HttpMethod.Post, "/reload");
    }

    [Fact]
    public async Task Reload_EndpointAndRouteChanged_NextRequestOnTheSameConnectionFollows()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        const string Raw = """, { "name": "raw", "address": "127.0.0.1:0", "service": "web" }""";
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint), extraListeners: Raw));
        using var client = await RawHttp1Client.ConnectAsync(host.AddressOf("edge")!);
        Assert.Equal("a 200", (await client.GetAsync("/1", Timeout)).Body);

        // Opaque TCP (listener raw) carries the same HTTP/1.1 bytes: a connection stays on its endpoint for its life.
        using var tcpBefore = await RawHttp1Client.ConnectAsync(host.AddressOf("raw")!);
        Assert.Equal("a 200", (await tcpBefore.GetAsync("/1", Timeout)).Body);

        // The endpoint changes: the same keep-alive connection's next request goes to b.
        var (status, body) = await ReloadAsync(host, path, ConfigFile(Web(b.EndPoint), extraListeners: Raw));
        Assert.Equal(200, status);
        Assert.Contains("changed: service web changed (endpoints)", body, StringComparison.Ordinal);
        Assert.DoesNotContain("needs restart", body, StringComparison.Ordinal);
        Assert.Equal("b 200", (await client.GetAsync("/2", Timeout)).Body);

        // TCP: the open connection is not dropped and stays on a; a new one goes to b.
        Assert.Equal("a 200", (await tcpBefore.GetAsync("/2", Timeout)).Body);
        using (var tcpAfter = await RawHttp1Client.ConnectAsync(host.AddressOf("raw")!))
        {
            Assert.Equal("b 200", (await tcpAfter.GetAsync("/1", Timeout)).Body);
        }

        // A route by path to a second service appears: still the same connection.
        var routes = """
            [ { "name": "to-a", "match": { "path": { "prefix": "/a" } }, "action": { "service": "other" } },
              { "name": "rest", "action": { "service": "web" } } ]
            """;
        (status, body) = await ReloadAsync(host, path, ConfigFile($$"""{{Web(b.EndPoint)}}, { "name": "other", "endpoints": ["{{a.EndPoint}}"] }""", routes, Raw));
        Assert.Equal(200, status);
        Assert.Contains("service other added", body, StringComparison.Ordinal);
        Assert.Contains("listener edge routes changed", body, StringComparison.Ordinal);
        Assert.Equal("a 200", (await client.GetAsync("/a/x", Timeout)).Body);
        Assert.Equal("b 200", (await client.GetAsync("/b/x", Timeout)).Body);

        // /config shows the new configuration, and the metrics count the reloads.
        var (_, config) = await AdminAsync(host, HttpMethod.Get, "/config");
        Assert.Contains("\"other\"", config, StringComparison.Ordinal);
        Assert.Contains(b.EndPoint.ToString(), config, StringComparison.Ordinal);
        var (_, metrics) = await AdminAsync(host, HttpMethod.Get, "/metrics");
        Assert.Contains("proxy_config_reloads_total{result=\"applied\"} 2", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_config_generation 3", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_config_last_reload_success_timestamp_seconds", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_SplitChanged_NewRequestsFollowTheNewWeights()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        static string Split(params string[] subsets) => $$"""
            [ { "name": "split", "action": { "split": [ {{string.Join(", ", subsets.Select(static x => "{ \"service\": \"web\", \"subset\": \"" + x + "\", \"weight\": 1 }"))}} ] } } ]
            """;
        var service = $$"""{ "name": "web", "endpoints": ["{{a.EndPoint}}", "{{b.EndPoint}}"], "subsets": { "a": ["{{a.EndPoint}}"], "b": ["{{b.EndPoint}}"] } }""";
        var (host, path) = await StartAsync(ConfigFile(service, Split("a")));
        using var http = Client();
        async Task<int> CountAsync(string name)
        {
            var hits = 0;
            for (var i = 0; i < 40; i++)
            {
                hits += (await http.GetStringAsync($"http://{host.AddressOf("edge")}/{i}").WaitAsync(Timeout)).StartsWith(name + " ", StringComparison.Ordinal) ? 1 : 0;
            }

            return hits;
        }

        Assert.Equal(40, await CountAsync("a"));

        // 50/50 (40 requests all on one side: probability 2^-39), then all on b.
        Assert.Equal(200, (await ReloadAsync(host, path, ConfigFile(service, Split("a", "b")))).Status);
        var toA = await CountAsync("a");
        Assert.InRange(toA, 1, 39);
        Assert.Equal(200, (await ReloadAsync(host, path, ConfigFile(service, Split("b")))).Status);
        Assert.Equal(0, await CountAsync("a"));
    }

    [Fact]
    public async Task Reload_InvalidFile_400NamingTheKey_OldConfigStays()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)));
        var (_, configBefore) = await AdminAsync(host, HttpMethod.Get, "/config");

        var bad = ConfigFile($$"""{ "name": "web", "endpoints": ["{{b.EndPoint}}"], "balancer": "fastest" }""");
        var (status, body) = await ReloadAsync(host, path, bad);
        Assert.Equal(400, status);
        Assert.Contains("rejected", body, StringComparison.Ordinal);
        Assert.Contains(".balancer: \"fastest\" is not a balancer", body, StringComparison.Ordinal);

        using var http = Client();
        Assert.Equal("a 200", await http.GetStringAsync($"http://{host.AddressOf("edge")}/x").WaitAsync(Timeout));
        Assert.Equal(configBefore, (await AdminAsync(host, HttpMethod.Get, "/config")).Body);
        Assert.Contains("proxy_config_reloads_total{result=\"rejected\"}", (await AdminAsync(host, HttpMethod.Get, "/metrics")).Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_ByFileChange_AppliedWithoutAsking()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)), watch: true);
        var applied = new TaskCompletionSource<ReloadOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Reloader!.Reloaded += o =>
        {
            // An editor's partial write may be read (and rejected) first.
            if (o == ReloadOutcome.Applied)
            {
                applied.TrySetResult(o);
            }
        };
        await System.IO.File.WriteAllTextAsync(path, ConfigFile(Web(b.EndPoint)));
        Assert.Equal(ReloadOutcome.Applied, await applied.Task.WaitAsync(Timeout));
        using var http = Client();
        Assert.Equal("b 200", await http.GetStringAsync($"http://{host.AddressOf("edge")}/x").WaitAsync(Timeout));
    }

    [Fact]
    public async Task Reload_ListenerAddedAndSettingChanged_ReportedAsNeedingRestart_RestApplied()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)));
        var next = ConfigFile(Web(b.EndPoint), extraListeners: """, { "name": "late", "address": "127.0.0.1:0", "service": "web" }""")
            .Replace("\"adminListen\"", "\"drainTimeout\": \"3s\", \"adminListen\"", StringComparison.Ordinal);
        var (status, body) = await ReloadAsync(host, path, next);
        Assert.Equal(200, status);
        Assert.Contains("needs restart: listener late added", body, StringComparison.Ordinal);
        Assert.Contains("needs restart: drainTimeout changed", body, StringComparison.Ordinal);
        Assert.Contains("changed: service web changed", body, StringComparison.Ordinal);
        Assert.Null(host.AddressOf("late"));
        using var http = Client();
        Assert.Equal("b 200", await http.GetStringAsync($"http://{host.AddressOf("edge")}/x").WaitAsync(Timeout));

        // /config shows what is in force: the new service, not the listener that is not bound.
        var (_, config) = await AdminAsync(host, HttpMethod.Get, "/config");
        Assert.DoesNotContain("\"late\"", config, StringComparison.Ordinal);
        Assert.Contains(b.EndPoint.ToString(), config, StringComparison.Ordinal);

        // /clusters too: the endpoints in force.
        var (_, clusters) = await AdminAsync(host, HttpMethod.Get, "/clusters");
        Assert.Contains(b.EndPoint.ToString(), clusters, StringComparison.Ordinal);
        Assert.DoesNotContain(a.EndPoint.ToString(), clusters, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_EndpointRemoved_ItsLongInFlightRequestCompletes_NewRequestsGoElsewhere()
    {
        await using var slow = await SlowUpstream.StartAsync();
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(slow.EndPoint)));
        using var http = Client();
        var endpoint = host.Snapshot.Services.FindByName("web")!.Balancer.Endpoints[0];
        var longRequest = http.GetStringAsync($"http://{host.AddressOf("edge")}/work?ms=1500");
        while (endpoint.InFlight == 0)
        {
            Assert.False(longRequest.IsCompleted, "the long request ended before the reload");
            await Task.Delay(10).WaitAsync(Timeout);
        }

        var (status, body) = await ReloadAsync(host, path, ConfigFile(Web(b.EndPoint)));
        Assert.Equal(200, status);
        Assert.False(longRequest.IsCompleted, "the reload waited for the in-flight request");
        Assert.Equal("b 200", await http.GetStringAsync($"http://{host.AddressOf("edge")}/x").WaitAsync(Timeout));
        Assert.Equal("done 1500", await longRequest.WaitAsync(Timeout));

        // The client has the whole response a moment before the proxy's session ends the request on the endpoint.
        using var ended = new CancellationTokenSource(Timeout);
        while (endpoint.InFlight != 0)
        {
            await Task.Delay(10, ended.Token);
        }
        output.WriteLine(body);
    }

    [Fact]
    public async Task Reload_UnchangedEndpoint_KeepsItsObjectAndInFlightCount()
    {
        await using var slow = await SlowUpstream.StartAsync();
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(slow.EndPoint)));
        var before = host.Snapshot.Services.FindByName("web")!.Balancer.Endpoints[0];
        using var http = Client();
        var longRequest = http.GetStringAsync($"http://{host.AddressOf("edge")}/work?ms=800");
        while (before.InFlight == 0)
        {
            await Task.Delay(10).WaitAsync(Timeout);
        }

        Assert.Equal(200, (await ReloadAsync(host, path, ConfigFile(Web(slow.EndPoint, b.EndPoint)))).Status);
        var after = host.Snapshot.Services.FindByName("web")!.Balancer.Endpoints;
        Assert.Same(before, after[0]);
        Assert.Equal(1, after[0].InFlight);
        Assert.Equal("done 800", await longRequest.WaitAsync(Timeout));

        // The client has the whole response a moment before the proxy's session ends the request on the endpoint.
        using var ended = new CancellationTokenSource(Timeout);
        while (after[0].InFlight != 0)
        {
            await Task.Delay(10, ended.Token);
        }
    }

    /// <summary>
    /// Reloads during load: 3 HTTP/1.1 keep-alive clients, 2 clients opening a new connection per request and one HTTP/2
    /// client with 6 concurrent streams loop through the sidecar while the config file is reloaded 12 times, moving
    /// service web between endpoints a, b and both. No request may fail; both endpoints must have served requests.
    /// </summary>
    [Fact]
    public async Task Reload_DuringLoad_Http1KeepAliveNewConnectionsAndHttp2_ZeroFailedRequests()
    {
        var a = Upstream("a");
        var b = Upstream("b");
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)));
        var edge = host.AddressOf("edge")!;
        using var stop = new CancellationTokenSource();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long ok = 0;
        var served = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();

        void Count(string body)
        {
            Interlocked.Increment(ref ok);
            served.AddOrUpdate(body, 1, static (_, n) => n + 1);
        }

        async Task KeepAliveLoop()
        {
            using var client = await RawHttp1Client.ConnectAsync(edge);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var (status, close, body) = await client.GetAsync("/k", Timeout);
                    if (status != 200 || close)
                    {
                        failures.Enqueue($"keep-alive: {status} close={close} {body}");
                        return;
                    }

                    Count(body);
                }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException)
                {
                    failures.Enqueue("keep-alive: " + e.Message);
                    return;
                }
            }
        }

        async Task NewConnectionLoop()
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var client = await RawHttp1Client.ConnectAsync(edge);
                    var (status, _, body) = await client.GetAsync("/n", Timeout);
                    if (status != 200)
                    {
                        failures.Enqueue($"new connection: {status} {body}");
                        continue;
                    }

                    Count(body);
                }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException)
                {
                    failures.Enqueue("new connection: " + e.Message);
                }
            }
        }

        using var h2 = new HttpClient(new SocketsHttpHandler { UseProxy = false, EnableMultipleHttp2Connections = false }) { Timeout = Timeout };
        async Task Http2Loop()
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{edge}/h2") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                    using var response = await h2.SendAsync(request).WaitAsync(Timeout);
                    var body = await response.Content.ReadAsStringAsync();
                    if (response.StatusCode != HttpStatusCode.OK || response.Version != HttpVersion.Version20)
                    {
                        failures.Enqueue($"h2: {(int)response.StatusCode} {body}");
                        continue;
                    }

                    Count(body);
                }
                catch (Exception e) when (e is HttpRequestException or TimeoutException or TaskCanceledException)
                {
                    failures.Enqueue("h2: " + e.Message);
                }
            }
        }

        var loops = new List<Task>();
        for (var i = 0; i < 3; i++)
        {
            loops.Add(KeepAliveLoop());
        }

        for (var i = 0; i < 2; i++)
        {
            loops.Add(NewConnectionLoop());
        }

        for (var i = 0; i < 6; i++)
        {
            loops.Add(Http2Loop());
        }

        var sets = new[] { Web(b.EndPoint), Web(a.EndPoint, b.EndPoint), Web(a.EndPoint) };
        for (var i = 0; i < 12; i++)
        {
            // Let some requests through on this configuration before the next.
            var target = Interlocked.Read(ref ok) + 50;
            while (Interlocked.Read(ref ok) < target && failures.IsEmpty)
            {
                await Task.Delay(5).WaitAsync(Timeout);
            }

            var (status, body) = await ReloadAsync(host, path, ConfigFile(sets[i % sets.Length]));
            Assert.True(status == 200, body);
        }

        var final = Interlocked.Read(ref ok) + 50;
        while (Interlocked.Read(ref ok) < final && failures.IsEmpty)
        {
            await Task.Delay(5).WaitAsync(Timeout);
        }

        await stop.CancelAsync();
        await Task.WhenAll(loops).WaitAsync(Timeout);
        output.WriteLine($"requests: {Interlocked.Read(ref ok)} succeeded, {failures.Count} failed; served: {string.Join(", ", served.Select(p => $"{p.Key} x{p.Value}"))}");
        Assert.Empty(failures);
        Assert.True(served.GetValueOrDefault("a 200") > 0 && served.GetValueOrDefault("b 200") > 0, "both endpoints served requests");
        var (_, metrics) = await AdminAsync(host, HttpMethod.Get, "/metrics");
        Assert.Contains("proxy_config_reloads_total{result=\"applied\"} 12", metrics, StringComparison.Ordinal);
        Assert.Equal(12 + 1, host.Snapshot.Generation);
        Assert.Equal(12 + 1, long.Parse(metrics.Split('\n').First(l => l.StartsWith("proxy_config_generation ", StringComparison.Ordinal))[24..], CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Reload_RouteWithJwtAdded_TheOpenConnectionsNextRequestMustAuthenticate()
    {
        using var issuer = new Proxy.Tests.Jwt.JwtTestIssuer("k1");
        var jwks = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"reload-jwks-{Guid.NewGuid():N}.json");
        _files.Add(jwks);
        await System.IO.File.WriteAllTextAsync(jwks, issuer.Jwks());
        var a = Upstream("a");
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)));
        using var client = await RawHttp1Client.ConnectAsync(host.AddressOf("edge")!);
        Assert.Equal(200, (await client.GetAsync("/admin/x", Timeout)).Status);

        var routes = $$"""
            [ { "name": "admin", "match": { "path": { "prefix": "/admin" } }, "action": { "service": "web" },
                "jwt": { "issuer": "{{Proxy.Tests.Jwt.JwtTestIssuer.Issuer}}", "jwks": "{{jwks}}" } },
              { "name": "rest", "action": { "service": "web" } } ]
            """;
        var (status, body) = await ReloadAsync(host, path, ConfigFile(Web(a.EndPoint), routes));
        Assert.True(status == 200, body);
        var (denied, _, why) = await client.GetAsync("/admin/x", Timeout);
        Assert.Equal(401, denied);
        Assert.Contains("token", why, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(200, (await client.GetAsync("/other", Timeout)).Status);

        // And the route goes away again: open once more.
        Assert.Equal(200, (await ReloadAsync(host, path, ConfigFile(Web(a.EndPoint)))).Status);
        Assert.Equal(200, (await client.GetAsync("/admin/x", Timeout)).Status);
    }

    [Fact]
    public async Task Reload_TlsOriginationAddedThenChanged_NewRequestsDialTlsWithTheNewSettings()
    {
        var a = Upstream("a");
        var backend = new Proxy.Sidecar.Tests.Tls.TlsBackend("backend");
        _disposables.Add(backend);
        var (host, path) = await StartAsync(ConfigFile(Web(a.EndPoint)));
        using var http = Client();
        var url = $"http://{host.AddressOf("edge")}/x";
        Assert.Equal("a 200", await http.GetStringAsync(url).WaitAsync(Timeout));

        string Tls(string sni) => ConfigFile($$"""{ "name": "web", "endpoints": ["{{backend.EndPoint}}"], "upstreamProtocol": "http1", "tls": { "sni": "{{sni}}", "insecureSkipVerify": true } }""");
        var (status, body) = await ReloadAsync(host, path, Tls("one.example"));
        Assert.True(status == 200, body);
        Assert.Contains("service web changed (endpoints, tls)", body, StringComparison.Ordinal);
        Assert.Equal("backend\n", await http.GetStringAsync(url).WaitAsync(Timeout));

        // Another server name: the service gets new TLS upstreams (the old ones are closed after the drain timeout).
        Assert.Equal(200, (await ReloadAsync(host, path, Tls("two.example"))).Status);
        Assert.Equal("backend\n", await http.GetStringAsync(url).WaitAsync(Timeout));
        lock (backend.ServerNames)
        {
            Assert.Equal(["one.example", "two.example"], backend.ServerNames.Distinct());
        }
    }

    [Fact]
    public async Task Reload_WithoutConfigFile_409()
    {
        var config = new ProxyConfig { OutboundListen = null, InboundListen = null, AdminListen = new IPEndPoint(IPAddress.Loopback, 0) };
        var host = new SidecarHost(config, NullLoggerFactory.Instance);
        _disposables.Add(host);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        var (status, body) = await AdminAsync(host, HttpMethod.Post, "/reload");
        Assert.Equal(409, status);
        Assert.Contains("--config", body, StringComparison.Ordinal);
    }
}

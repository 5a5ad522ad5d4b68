using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>Keepalive of the pool's HTTP/2 connections, through the forwarder, against a hand-driven server.</summary>
public sealed class Http2UpstreamKeepaliveTests
{
    private static async Task RespondAsync(RawH2Server server, uint streamId, string body)
    {
        await server.SendHeadersAsync(streamId, false, (":status", "200"), ("content-length", body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await server.SendAsync(H2Frame.Data, 0x1, streamId, Encoding.ASCII.GetBytes(body));
    }

    [Fact]
    public async Task SilentServer_ConnectionDeclaredDead_OpenRequestAnswered502_NextRequestOnANewConnection()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        using var metrics = new ProxyMetrics();
        var timeouts = new List<string?>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument, metrics.Http2KeepaliveTimeouts))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "service")
                {
                    lock (timeouts)
                    {
                        timeouts.Add(tag.Value as string);
                    }
                }
            }
        });
        listener.Start();

        var address = new UpstreamAddress(server.EndPoint);
        var options = new Http2UpstreamPoolOptions
        {
            KeepaliveFor = a => a == address ? new Http2EndpointKeepalive("web", TimeSpan.FromMilliseconds(150), TimeSpan.FromMilliseconds(300)) : null,
        };
        await using var pool = new Http2UpstreamPool(connector, options, metrics);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var hanging = client.GetAsync("/hangs");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var silentSince = Stopwatch.StartNew();
        var skipped = new List<H2Frame>();

        // The server reads the request and the PING and answers neither: the connection is declared dead.
        await server.ReadUntilAsync(H2Frame.Ping, skipped);
        Assert.Contains(skipped, f => f.Type == H2Frame.Headers);
        var goAway = await server.ReadUntilAsync(H2Frame.GoAway);
        Assert.Null(await server.ReadFrameAsync());

        using var response = await hanging.WaitAsync(Timeouts.Short);
        Assert.True(silentSince.Elapsed >= TimeSpan.FromMilliseconds(150 + 300 - 20), $"dead after {silentSince.Elapsed.TotalMilliseconds} ms");
        Assert.Equal(0u, goAway.ErrorCode);
        Assert.Equal(502, (int)response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("keepalive PING", body, StringComparison.Ordinal);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(ProxyErrors.UpstreamReset, record.Error);
        Assert.Equal("upstream_reset", response.Headers.GetValues("x-proxy-error").Single());
        // The pool drops the connection on its GoingAway signal (a thread-pool continuation, so not necessarily before
        // the 502 is out); a rent meanwhile would not get a stream on it anyway (it takes no new streams).
        await pool.WaitForNoConnectionAsync(address);

        // The next request opens a new connection (a live server this time).
        var next = client.GetStringAsync("/after");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, headers.StreamId, "new connection");
        Assert.Equal("new connection", await next.WaitAsync(Timeouts.Short));
        Assert.Equal(2, pool.ConnectionsOpened);
        lock (timeouts)
        {
            Assert.Equal(["web"], timeouts);
        }
    }

    [Fact]
    public async Task IdlePooledConnection_IsPinged_AndKeptWhileTheServerAnswers()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        var options = new Http2UpstreamPoolOptions
        {
            Client = Http2ClientOptions.Default with { KeepaliveInterval = TimeSpan.FromMilliseconds(100), KeepaliveTimeout = TimeSpan.FromSeconds(5) },
        };
        await using var pool = new Http2UpstreamPool(connector, options);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var first = client.GetStringAsync("/first");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, headers.StreamId, "one");
        Assert.Equal("one", await first.WaitAsync(Timeouts.Short));

        // No stream open now: the idle connection is pinged too, and answering keeps it.
        for (var i = 0; i < 3; i++)
        {
            var ping = await server.ReadUntilAsync(H2Frame.Ping);
            Assert.Equal(0, ping.Flags & 0x1);
            await server.SendAsync(H2Frame.Ping, 0x1, 0, ping.Payload);
        }

        var second = client.GetStringAsync("/second");
        var secondHeaders = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, secondHeaders.StreamId, "two");
        Assert.Equal("two", await second.WaitAsync(Timeouts.Short));
        Assert.Equal(1, pool.ConnectionsOpened);
    }
}

internal static class Http2UpstreamPoolWaits
{
    /// <summary>Polls until the pool holds no connection taking streams to <paramref name="address"/> (bounded by <see cref="Timeouts.Short"/>).</summary>
    public static async Task WaitForNoConnectionAsync(this Http2UpstreamPool pool, UpstreamAddress address)
    {
        var waited = Stopwatch.StartNew();
        while (pool.ConnectionCount(address) != 0)
        {
            Assert.True(waited.Elapsed < Timeouts.Short, $"the pool still holds {pool.ConnectionCount(address)} connection(s) to {address}");
            await Task.Delay(10);
        }
    }
}

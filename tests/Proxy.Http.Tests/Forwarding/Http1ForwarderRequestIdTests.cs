using System.Collections.Concurrent;
using Proxy.Core.Configuration;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Tests.Forwarding;

/// <summary><c>x-request-id</c>: kept when sent, made when asked (<see cref="RequestIdMode.Generate"/>), logged either way.</summary>
public sealed class Http1ForwarderRequestIdTests
{
    /// <summary>The x-request-id of each request the upstream was sent (empty when none).</summary>
    private static string[] Ids(ConcurrentQueue<string> heads) => [.. heads.Select(static head =>
    {
        var line = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("x-request-id:", StringComparison.OrdinalIgnoreCase));
        return line is null ? "" : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
    })];

    [Fact]
    public async Task Generate_NewUuidForARequestWithout_OwnKeptOtherwise_BothLogged()
    {
        var ids = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(ids);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address), new Http1ForwarderOptions { RequestId = RequestIdMode.Generate });
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        for (var i = 0; i < 2; i++)
        {
            await client.SendAsync("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
            Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);
        }

        await client.SendAsync("GET /b HTTP/1.1\r\nHost: h\r\nX-Request-Id: client-chose-this\r\n\r\n");
        Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);

        var sent = Ids(ids);
        Assert.Equal(3, sent.Length);
        foreach (var made in sent[..2])
        {
            var uuid = Guid.ParseExact(made, "D");
            Assert.Equal(4, uuid.Version);
            Assert.Equal(made, made.ToLowerInvariant());
        }

        Assert.NotEqual(sent[0], sent[1]);
        Assert.Equal("client-chose-this", sent[2]);
        var records = await proxy.Observer.WaitForAsync(3);
        Assert.Equal(sent, records.Select(r => r.RequestId));
    }

    [Fact]
    public async Task Preserve_TheDefault_NothingAdded_OwnPassedOnAndLogged()
    {
        var ids = new ConcurrentQueue<string>();
        using var upstream = RawUpstreamHttp.Recording(ids);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);
        await client.SendAsync("GET /b HTTP/1.1\r\nHost: h\r\nx-request-id: abc\r\n\r\n");
        Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);

        Assert.Equal(["", "abc"], Ids(ids));
        Assert.Equal(["", "abc"], (await proxy.Observer.WaitForAsync(2)).Select(r => r.RequestId));
    }

    [Fact]
    public async Task Generate_ProxyMadeAnswer_StillLogsAnId()
    {
        await using var proxy = await ForwarderHarness.StartAsync(
            Http1Routing.ForRoutes(new Proxy.Http.Routing.RouteTable(RouteConfigReader.ReadJson("""[{ "match": { "hosts": ["other"] }, "action": { "service": "s" } }]""").Routes!), _ => null),
            new Http1ForwarderOptions { RequestId = RequestIdMode.Generate });
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        Assert.Equal(404, (await client.Reader.ReadResponseAsync()).Status);

        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(4, Guid.ParseExact(record.RequestId, "D").Version);
    }
}

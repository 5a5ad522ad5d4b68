using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Addresses;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>The HTTP/1.1 → HTTP/2 request mapping, and exchange behaviour under aborts, timeouts and load.</summary>
public sealed class Http2UpstreamExchangeTests
{
    private static List<(string Name, string Value)> Map(string head, EndPoint? endpoint = null)
    {
        var parsed = new Http1RequestHead();
        var parser = new Http1RequestHeadParser(new Http2UpstreamPoolOptions().RequestParser);
        Assert.True(parser.TryParse(new System.Buffers.ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(head)), parsed, out _));
        using var fields = new Http2FieldList();
        Http2UpstreamExchange.BuildRequestFields(parsed, fields, endpoint);
        return ClientExchange.ToList(fields);
    }

    [Fact]
    public void BuildRequestFields_OriginForm_PseudoHeadersFromLineAndHost_ConnectionFieldsDropped()
    {
        var fields = Map("POST /a/b?c=d HTTP/1.1\r\nHost: svc:8080\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n" +
            "Proxy-Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nTE: trailers, deflate\r\nUpgrade-Insecure-Requests: 1\r\nX-Custom: v\r\nCookie: a=1\r\n\r\n");

        Assert.Equal(
            [(":method", "POST"), (":scheme", "http"), (":authority", "svc:8080"), (":path", "/a/b?c=d"), ("te", "trailers"),
             ("Upgrade-Insecure-Requests", "1"), ("X-Custom", "v"), ("Cookie", "a=1")],
            fields);
    }

    [Fact]
    public void BuildRequestFields_TeWithoutTrailers_Dropped()
    {
        var fields = Map("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n");

        Assert.DoesNotContain(fields, f => f.Name.Equals("te", StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [InlineData("http://other.example:81/p?q=1", "other.example:81", "/p?q=1")]
    [InlineData("http://other.example", "other.example", "/")]
    [InlineData("http://other.example?q", "other.example", "/?q")]
    public void BuildRequestFields_AbsoluteForm_AuthorityAndPathFromTheUri(string target, string authority, string path)
    {
        var fields = Map($"GET {target} HTTP/1.1\r\nHost: ignored\r\n\r\n");

        Assert.Equal((":authority", authority), fields[2]);
        Assert.Equal((":path", path), fields[3]);
    }

    [Fact]
    public void BuildRequestFields_Http10WithoutHost_NamesTheEndpoint()
    {
        var fields = Map("GET /old HTTP/1.0\r\n\r\n", IPEndPoint.Parse("10.0.0.7:8080"));

        Assert.Equal([(":method", "GET"), (":scheme", "http"), (":authority", "10.0.0.7:8080"), (":path", "/old")], fields);
    }

    [Fact]
    public async Task ClientGoesAwayMidBody_UpstreamStreamIsResetWithCancel()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint).WaitAsync(Timeouts.Short);
        await socket.SendAsync("POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\n0123456789"u8.ToArray()).WaitAsync(Timeouts.Short);

        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await server.ReadUntilAsync(H2Frame.Data);
        RawUpstream.Reset(socket);
        var reset = await server.ReadUntilAsync(H2Frame.RstStream);

        Assert.Equal(headers.StreamId, reset.StreamId);
        Assert.Equal(0x8u, reset.ErrorCode);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(ProxyErrors.ClientClosed, record.Error);
    }

    [Fact]
    public async Task NoResponseHead_ResponseTimeout504_AndTheStreamIsCancelled()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var options = new Http1ForwarderOptions { ResponseTimeout = TimeSpan.FromMilliseconds(300) };
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), options, http2Pool: pool);
        using var client = proxy.CreateClient();

        var request = client.GetAsync("/slow");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        using var response = await request.WaitAsync(Timeouts.Short);
        var reset = await server.ReadUntilAsync(H2Frame.RstStream);

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal(headers.StreamId, reset.StreamId);
        Assert.Equal(0x8u, reset.ErrorCode);
    }

    [Fact]
    public async Task ManyConcurrentPostsWithBodies_AllByteExact_OverFewConnections()
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(async ctx =>
        {
            using var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            var bytes = body.ToArray();
            if (ctx.Request.Query.ContainsKey("chunked"))
            {
                await ctx.Response.Body.WriteAsync(bytes.AsMemory(0, bytes.Length / 2));
                await ctx.Response.Body.FlushAsync();
                await ctx.Response.Body.WriteAsync(bytes.AsMemory(bytes.Length / 2));
                return;
            }

            ctx.Response.ContentLength = bytes.Length;
            await ctx.Response.Body.WriteAsync(bytes);
        });
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        var options = new Http2UpstreamPoolOptions { Client = new Http2ClientOptions { InitialStreamWindowSize = 32 * 1024 } };
        await using var pool = new Http2UpstreamPool(connector, options);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", upstream.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        async Task RunAsync(int i)
        {
            for (var round = 0; round < 5; round++)
            {
                var payload = RandomNumberGenerator.GetBytes(1000 + (i * 3001 % 200_000));
                var content = (i + round) % 2 == 0 ? (HttpContent)new ByteArrayContent(payload) : new StreamContent(new MemoryStream(payload));
                using var request = new HttpRequestMessage(HttpMethod.Post, round % 2 == 0 ? "/echo" : "/echo?chunked=1") { Content = content };
                request.Headers.TransferEncodingChunked = content is StreamContent ? true : null;
                using var response = await client.SendAsync(request);
                var echoed = await response.Content.ReadAsByteArrayAsync();
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.True(payload.AsSpan().SequenceEqual(echoed), $"request {i}/{round}: {echoed.Length} of {payload.Length} bytes");
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 24).Select(RunAsync)).WaitAsync(Timeouts.Bulk);

        Assert.True(pool.ConnectionsOpened <= 2, $"{pool.ConnectionsOpened} connections");
        Assert.Equal(1, pool.ConnectionCount(new UpstreamAddress(upstream.EndPoint)));
    }
}

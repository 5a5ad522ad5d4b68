using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;

namespace Proxy.Http.Tests.Forwarding;

public sealed class Http1ForwarderTests
{
    internal static Service ServiceOf(string name, params System.Net.IPEndPoint[] endpoints) =>
        new ServiceRegistry([new ServiceConfig(name, [], endpoints)]).FindByName(name)!;

    private static Task<KestrelUpstream> EchoUpstreamAsync() => KestrelUpstream.StartAsync(async ctx =>
    {
        ctx.Response.Headers["x-upstream-path"] = ctx.Request.Path.Value;
        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        var text = $"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} {body.Length}";
        if (body.Length > 0)
        {
            ctx.Response.ContentLength = body.Length;
            await ctx.Response.Body.WriteAsync(body.ToArray());
        }
        else
        {
            await ctx.Response.WriteAsync(text);
        }
    });

    [Fact]
    public async Task HandleAsync_HttpClientGetsOnOneConnection_ForwardsAndReusesUpstreamConnection()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(ServiceOf("web", upstream.EndPoint)));
        using var client = proxy.CreateClient();

        for (var i = 0; i < 3; i++)
        {
            using var response = await client.GetAsync($"/item/{i}?q=1").WaitAsync(Timeouts.Short);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"GET /item/{i}?q=1 0", await response.Content.ReadAsStringAsync());
            Assert.Equal($"/item/{i}", response.Headers.GetValues("x-upstream-path").Single());
        }

        var records = await proxy.Observer.WaitForAsync(3);
        Assert.Equal(1, proxy.Pool.Connects);
        Assert.Equal(3, proxy.Observer.RoutedCalls);
        Assert.All(records, r =>
        {
            Assert.Equal("test", r.Listener);
            Assert.Equal("web", r.Service);
            Assert.Equal("", r.Route);
            Assert.True(r.Routed);
            Assert.Equal(200, r.StatusCode);
            Assert.Equal("GET", r.Method);
            Assert.Equal("HTTP/1.1", r.Protocol);
            Assert.Equal(upstream.Address, r.Endpoint);
            Assert.Null(r.Error);
            Assert.False(r.ProxyMade);
            Assert.Equal(1, r.Attempts);
            Assert.NotNull(r.UpstreamDuration);
            Assert.True(r.Duration >= r.UpstreamDuration);
        });
        Assert.Equal("/item/0?q=1", records[0].Target);
        Assert.Equal(proxy.EndPoint.ToString(), records[0].Authority);
        Assert.False(records[0].ReusedConnection);
        Assert.True(records[1].ReusedConnection);
        Assert.True(records[2].ReusedConnection);
    }

    [Fact]
    public async Task HandleAsync_PostWithContentLength_StreamsBodyBothWays()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(ServiceOf("web", upstream.EndPoint)));
        using var client = proxy.CreateClient();
        var payload = new byte[300_000];
        new Random(7).NextBytes(payload);

        for (var i = 0; i < 2; i++)
        {
            using var content = new ByteArrayContent(payload);
            using var response = await client.PostAsync("/upload", content).WaitAsync(Timeouts.Short);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(payload, await response.Content.ReadAsByteArrayAsync());
        }

        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal(payload.Length, records[0].RequestBytes);
        Assert.Equal(payload.Length, records[0].ResponseBytes);
        Assert.Equal(1, proxy.Pool.Connects);
    }

    [Fact]
    public async Task HandleAsync_ChunkedRequestWithExtensionsAndTrailers_ForwardsFramingAsValidated()
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new System.Net.Sockets.NetworkStream(socket);
            var reader = new RawHttpReader(stream);
            var head = await reader.ReadHeadAsync();
            // Collect the raw body framing up to the end of the trailer section.
            var bytes = new List<byte>();
            var buffer = new byte[1];
            while (!Encoding.Latin1.GetString([.. bytes]).EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await reader.ReadRawAsync(buffer);
                if (n == 0)
                {
                    break;
                }

                bytes.Add(buffer[0]);
            }

            received.TrySetResult(head + "\r\n\r\n" + Encoding.Latin1.GetString([.. bytes]));
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n");
        var response = await client.Reader.ReadResponseAsync();

        Assert.Equal(200, response.Status);
        var forwarded = await received.Task.WaitAsync(Timeouts.Short);
        // TE is hop-by-hop, but the proxy takes trailers on this hop too, so it says so again (once, in its own words).
        Assert.StartsWith("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n", forwarded, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n", forwarded, StringComparison.Ordinal);
        var record = (await proxy.Observer.WaitForAsync(1))[0];
        Assert.Equal(11, record.RequestBytes);
        Assert.Equal("passthrough", record.Service);
    }

    [Fact]
    public async Task HandleAsync_ChunkedResponseWithTrailers_ReachesHttp11ClientFramedAndHttp10ClientDecoded()
    {
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new System.Net.Sockets.NetworkStream(socket);
            var reader = new RawHttpReader(stream);
            while (await reader.ReadHeadAsync() is not null)
            {
                await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n3\r\nabc\r\n4;e=1\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n");
            }
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address));

        using (var client = await RawClient.ConnectAsync(proxy.EndPoint))
        {
            await client.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            var response = await client.Reader.ReadResponseAsync();
            Assert.Equal("chunked", response.Header("transfer-encoding"));
            Assert.Equal("abcdefg", response.BodyText);
            Assert.Null(response.Header("connection"));
        }

        using (var client = await RawClient.ConnectAsync(proxy.EndPoint))
        {
            await client.SendAsync("GET / HTTP/1.0\r\n\r\n");
            var response = await client.Reader.ReadResponseAsync();
            Assert.Null(response.Header("transfer-encoding"));
            Assert.Equal("close", response.Header("connection"));
            Assert.Equal("abcdefg", response.BodyText);
        }

        var records = await proxy.Observer.WaitForAsync(2);
        Assert.All(records, r => Assert.Equal(7, r.ResponseBytes));
        Assert.Equal("HTTP/1.0", records[1].Protocol);
    }

    [Fact]
    public async Task HandleAsync_PipelinedRequests_AnsweredInOrder()
    {
        await using var upstream = await EchoUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(ServiceOf("web", upstream.EndPoint)));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        var pipelined = new StringBuilder();
        for (var i = 0; i < 10; i++)
        {
            pipelined.Append(i % 3 == 1
                ? $"POST /p{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nbody{i}"
                : $"GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n");
        }

        await client.SendAsync(pipelined.ToString());
        for (var i = 0; i < 10; i++)
        {
            var response = await client.Reader.ReadResponseAsync();
            Assert.Equal(200, response.Status);
            Assert.Equal(i % 3 == 1 ? $"body{i}" : $"GET /p{i} 0", response.BodyText);
        }

        var records = await proxy.Observer.WaitForAsync(10);
        Assert.Equal(1, proxy.Pool.Connects);
        Assert.Equal(10, records.Count);
    }

    [Theory]
    [InlineData("HEAD", 200)]
    [InlineData("GET", 204)]
    [InlineData("GET", 304)]
    public async Task HandleAsync_ResponsesWithoutBody_NoBodyForwardedAndConnectionReused(string method, int status)
    {
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            ctx.Response.StatusCode = status;
            if (status == 200)
            {
                ctx.Response.ContentLength = 1000;
                if (!HttpMethods.IsHead(ctx.Request.Method))
                {
                    await ctx.Response.Body.WriteAsync(new byte[1000]);
                }
            }
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(ServiceOf("web", upstream.EndPoint)));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        for (var i = 0; i < 2; i++)
        {
            await client.SendAsync($"{method} /x HTTP/1.1\r\nHost: a\r\n\r\n");
            var response = await client.Reader.ReadResponseAsync(method);
            Assert.Equal(status, response.Status);
            Assert.Empty(response.Body);
            if (method == "HEAD")
            {
                Assert.Equal("1000", response.Header("content-length"));
            }
        }

        // A marker request proves no stray body bytes were left between the responses.
        await client.SendAsync("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var last = await client.Reader.ReadResponseAsync();
        Assert.Equal(status, last.Status);
        Assert.Equal("close", last.Header("connection"));
        Assert.True(await client.Reader.IsAtEndAsync());
        Assert.Equal(1, proxy.Pool.Connects);
    }

    [Fact]
    public async Task HandleAsync_Http10WithoutHost_ForwardedAsHttp10AndKeptAliveWhenAsked()
    {
        var heads = new List<string>();
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new System.Net.Sockets.NetworkStream(socket);
            var reader = new RawHttpReader(stream);
            while (await reader.ReadHeadAsync() is { } head)
            {
                lock (heads)
                {
                    heads.Add(head);
                }

                await RawUpstreamHttp.SendAsync(socket, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nold");
            }
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("GET /legacy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        var first = await client.Reader.ReadResponseAsync();
        Assert.Equal("keep-alive", first.Header("connection"));
        Assert.Equal("old", first.BodyText);
        await client.SendAsync("GET /legacy2 HTTP/1.0\r\n\r\n");
        var second = await client.Reader.ReadResponseAsync();
        Assert.Equal("close", second.Header("connection"));
        Assert.True(await client.Reader.IsAtEndAsync());

        lock (heads)
        {
            Assert.Equal("GET /legacy HTTP/1.0\r\nConnection: keep-alive", heads[0]);
            Assert.Equal("GET /legacy2 HTTP/1.0\r\nConnection: keep-alive", heads[1]);
        }

        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal("", records[0].Authority);
        Assert.Equal(1, proxy.Pool.Connects);
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>
/// Trailers after a response body that had content-length (gRPC-like h2c servers send them): they reach a client that
/// takes trailers, through the HTTP/2 upstream pool, and through the HTTP/2 server as a final HEADERS with END_STREAM.
/// </summary>
public sealed class Http2UpstreamTrailersTests
{
    private static readonly byte[] Message = [0, 0, 0, 0, 5, 10, 3, 97, 98, 99];

    /// <summary>An h2c upstream (Kestrel, HTTP/2 only) answering with content-length, the body, then trailers.</summary>
    private static Task<KestrelH2Upstream> LengthAndTrailersUpstreamAsync() => KestrelH2Upstream.StartAsync(async ctx =>
    {
        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        ctx.Response.ContentType = "application/grpc";
        ctx.Response.ContentLength = Message.Length;
        ctx.Response.Headers["x-upstream-te"] = ctx.Request.Headers.TE.ToString();
        await ctx.Response.Body.WriteAsync(Message);
        ctx.Response.AppendTrailer("grpc-status", "0");
        ctx.Response.AppendTrailer("grpc-message", $"got {body.Length}");
    });

    private static Service GrpcService(IPEndPoint endPoint) =>
        new ServiceRegistry([new ServiceConfig("grpc", [], [endPoint]) { UpstreamProtocol = UpstreamProtocol.Http2 }]).FindByName("grpc")!;

    [Fact]
    public async Task Http2Client_ContentLengthResponseWithTrailers_TrailersArriveAsFinalHeadersWithEndStream()
    {
        await using var upstream = await LengthAndTrailersUpstreamAsync();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(GrpcService(upstream.EndPoint)), http2: true, http2Pool: pool);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        for (uint id = 1; id <= 5; id += 2)
        {
            await h2.SendHeadersAsync(id, false, (":method", "POST"), (":scheme", "http"), (":authority", "grpc"), (":path", "/pkg.Svc/Call"),
                ("content-type", "application/grpc"), ("te", "trailers"));
            await h2.SendDataAsync(id, [0, 0, 0, 0, 2, 8, 1], endStream: true);

            // Every frame of the stream, in order, up to END_STREAM.
            var frames = new List<H2Frame>();
            var headers = new List<List<(string Name, string Value)>>();
            while (true)
            {
                var frame = await h2.ReadFrameAsync() ?? throw new InvalidOperationException("the connection closed");
                if (frame.Type == H2Frame.Headers)
                {
                    var fields = h2.Decode(frame.Payload);
                    if (frame.StreamId == id)
                    {
                        headers.Add(fields);
                    }
                }

                if (frame.StreamId != id || frame.Type == H2Frame.WindowUpdate)
                {
                    continue;
                }

                Assert.NotEqual(H2Frame.RstStream, frame.Type);
                frames.Add(frame);
                if (frame.EndStream)
                {
                    break;
                }
            }

            var last = frames[^1];
            Assert.Equal(H2Frame.Headers, last.Type);
            Assert.True(last.EndStream);
            Assert.Equal(2, headers.Count);
            Assert.Contains((":status", "200"), headers[0]);
            Assert.Contains(("x-upstream-te", "trailers"), headers[0]);
            Assert.Equal([("grpc-message", "got 7"), ("grpc-status", "0")], headers[1].Order().ToList());
            Assert.All(frames.Where(f => f.Type == H2Frame.Data), f => Assert.False(f.EndStream));
            Assert.Equal(Message, frames.Where(f => f.Type == H2Frame.Data).SelectMany(f => f.Payload).ToArray());
        }

        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task Http2Client_TrailersOnlyAnswerWithContentLengthZero_StaysOneHeadersWithEndStream()
    {
        // A gRPC error as ASP.NET Core answers it: status in the only HEADERS (END_STREAM), with content-length: 0.
        await using var upstream = await KestrelH2Upstream.StartAsync(ctx =>
        {
            ctx.Response.ContentType = "application/grpc";
            ctx.Response.ContentLength = 0;
            ctx.Response.Headers["grpc-status"] = "5";
            ctx.Response.Headers["grpc-message"] = "not here";
            return Task.CompletedTask;
        });
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(GrpcService(upstream.EndPoint)), http2: true, http2Pool: pool);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "grpc"), (":path", "/pkg.Svc/Call"),
            ("content-type", "application/grpc"), ("te", "trailers"));
        await h2.SendDataAsync(1, [0, 0, 0, 0, 0], endStream: true);
        var (first, _) = await h2.ReadUntilAsync(f => f.StreamId == 1 && f.Type is H2Frame.Headers or H2Frame.Data or H2Frame.RstStream);
        var fields = h2.Decode(first.Payload);

        Assert.Equal(H2Frame.Headers, first.Type);
        Assert.True(first.EndStream);
        Assert.Contains(("grpc-status", "5"), fields);
        Assert.Contains(("grpc-message", "not here"), fields);
    }

    [Fact]
    public async Task Http2HttpClient_ContentLengthResponseWithTrailers_TrailingHeadersAndBody()
    {
        await using var upstream = await LengthAndTrailersUpstreamAsync();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(GrpcService(upstream.EndPoint)), http2: true, http2Pool: pool);
        using var client = proxy.CreateHttp2Client();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/pkg.Svc/Call") { Content = new ByteArrayContent([0, 0, 0, 0, 1, 7]) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        request.Headers.TE.ParseAdd("trailers");
        request.Version = HttpVersion.Version20;
        request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
        using var response = await client.SendAsync(request).WaitAsync(Timeouts.Short);
        var body = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeouts.Short);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Message, body);
        Assert.Equal("0", string.Join(",", response.TrailingHeaders.GetValues("grpc-status")));
        Assert.Equal("got 6", string.Join(",", response.TrailingHeaders.GetValues("grpc-message")));
    }

    [Fact]
    public async Task Http1Client_WithTeTrailers_GetsChunkedBodyAndTrailers_WithoutItNoTrailersAndTheLength()
    {
        await using var upstream = await LengthAndTrailersUpstreamAsync();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(GrpcService(upstream.EndPoint)), http2Pool: pool);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy.EndPoint).WaitAsync(Timeouts.Short);
        await using var stream = new NetworkStream(socket);

        // Takes trailers: chunked, then the trailer section (HTTP/1.1 cannot carry them with content-length).
        var withTe = await ExchangeAsync(stream, "POST /pkg.Svc/Call HTTP/1.1\r\nHost: grpc\r\nTE: trailers\r\nContent-Length: 3\r\n\r\nabc");
        Assert.StartsWith("HTTP/1.1 200", withTe, StringComparison.Ordinal);
        Assert.Contains("transfer-encoding: chunked\r\n", withTe, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("content-length", withTe, StringComparison.OrdinalIgnoreCase);
        var body = withTe[(withTe.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        Assert.StartsWith($"{Message.Length:x}\r\n{Encoding.Latin1.GetString(Message)}\r\n0\r\n", body, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n", body, StringComparison.Ordinal);
        var trailers = body[($"{Message.Length:x}\r\n".Length + Message.Length + "\r\n0\r\n".Length)..^4].Split("\r\n");
        Assert.Equal(["grpc-message: got 3", "grpc-status: 0"], trailers.Order(StringComparer.Ordinal).ToArray());

        // Does not: the length is kept and the trailers are left out (as before), on the same connection.
        var withoutTe = await ExchangeAsync(stream, "POST /pkg.Svc/Call HTTP/1.1\r\nHost: grpc\r\nContent-Length: 2\r\n\r\nab");
        Assert.StartsWith("HTTP/1.1 200", withoutTe, StringComparison.Ordinal);
        Assert.Contains($"content-length: {Message.Length}\r\n", withoutTe, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("grpc-status", withoutTe, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n" + Encoding.Latin1.GetString(Message), withoutTe, StringComparison.Ordinal);
    }

    /// <summary>Sends one request and reads its whole response (chunked up to the end of the trailer section, or content-length bytes).</summary>
    private static async Task<string> ExchangeAsync(NetworkStream stream, string request)
    {
        await stream.WriteAsync(Encoding.Latin1.GetBytes(request)).AsTask().WaitAsync(Timeouts.Short);
        var received = new StringBuilder();
        var buffer = new byte[4096];
        while (!IsComplete(received.ToString()))
        {
            var n = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeouts.Short);
            if (n == 0)
            {
                throw new InvalidOperationException("the proxy closed the connection; received: " + received);
            }

            received.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }

        return received.ToString();
    }

    private static bool IsComplete(string response)
    {
        var headEnd = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (headEnd < 0)
        {
            return false;
        }

        var head = response[..headEnd];
        var body = response[(headEnd + 4)..];
        if (head.Contains("transfer-encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            // The last chunk and the trailer section end with an empty line.
            return (body.Contains("\r\n0\r\n", StringComparison.Ordinal) || body.StartsWith("0\r\n", StringComparison.Ordinal)) && body.EndsWith("\r\n\r\n", StringComparison.Ordinal);
        }

        var lengthLine = head.Split("\r\n").First(l => l.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase));
        return body.Length >= int.Parse(lengthLine["content-length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}

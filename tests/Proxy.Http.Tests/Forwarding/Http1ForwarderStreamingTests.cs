using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Tests.Forwarding;

public sealed class Http1ForwarderStreamingTests
{
    private const int FiftyMegabytes = 50 * 1024 * 1024;

    /// <summary>Deterministic pseudo-random bytes (so both ends can hash them independently).</summary>
    private static void Fill(Span<byte> block, long offset)
    {
        for (var i = 0; i < block.Length; i++)
        {
            var x = (ulong)(offset + i) * 0x9E3779B97F4A7C15UL;
            block[i] = (byte)(x >> 56);
        }
    }

    private static string ExpectedHash(long size)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var block = new byte[64 * 1024];
        for (long offset = 0; offset < size; offset += block.Length)
        {
            var n = (int)Math.Min(block.Length, size - offset);
            Fill(block.AsSpan(0, n), offset);
            hash.AppendData(block, 0, n);
        }

        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static Task<KestrelUpstream> BulkUpstreamAsync() => KestrelUpstream.StartAsync(async ctx =>
    {
        if (ctx.Request.Path == "/download")
        {
            // No Content-Length: Kestrel sends it chunked.
            var size = long.Parse(ctx.Request.Query["size"]!, System.Globalization.CultureInfo.InvariantCulture);
            var block = new byte[61 * 1024];
            for (long offset = 0; offset < size; offset += block.Length)
            {
                var n = (int)Math.Min(block.Length, size - offset);
                Fill(block.AsSpan(0, n), offset);
                await ctx.Response.Body.WriteAsync(block.AsMemory(0, n));
            }

            return;
        }

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long total = 0;
        int read;
        while ((read = await ctx.Request.Body.ReadAsync(buffer)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            total += read;
        }

        await ctx.Response.WriteAsync($"{total} {Convert.ToHexString(hash.GetHashAndReset())} {ctx.Request.Headers.TransferEncoding}");
    });

    /// <summary>Streams <see cref="Fill"/> bytes without a length, so HttpClient sends them chunked.</summary>
    private sealed class GeneratedContent(long size) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var block = new byte[47 * 1024];
            for (long offset = 0; offset < size; offset += block.Length)
            {
                var n = (int)Math.Min(block.Length, size - offset);
                Fill(block.AsSpan(0, n), offset);
                await stream.WriteAsync(block.AsMemory(0, n));
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    [Fact]
    public async Task HandleAsync_FiftyMegabyteChunkedUploadAndDownload_ByteExact()
    {
        await using var upstream = await BulkUpstreamAsync();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("bulk", upstream.EndPoint)));
        using var client = proxy.CreateClient();
        var expected = ExpectedHash(FiftyMegabytes);

        using var content = new GeneratedContent(FiftyMegabytes);
        using var upload = await client.PostAsync("/upload", content).WaitAsync(Timeouts.Bulk);
        Assert.Equal($"{FiftyMegabytes} {expected} chunked", await upload.Content.ReadAsStringAsync().WaitAsync(Timeouts.Bulk));

        using var download = await client.GetAsync($"/download?size={FiftyMegabytes}", HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeouts.Bulk);
        Assert.True(download.Headers.TransferEncodingChunked);
        await using var stream = await download.Content.ReadAsStreamAsync();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeouts.Short)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            total += read;
        }

        Assert.Equal(FiftyMegabytes, total);
        Assert.Equal(expected, Convert.ToHexString(hash.GetHashAndReset()));
        var records = await proxy.Observer.WaitForAsync(2);
        Assert.Equal(FiftyMegabytes, records[0].RequestBytes);
        Assert.Equal(FiftyMegabytes, records[1].ResponseBytes);
        Assert.Equal(1, proxy.Pool.Connects);
    }

    private static async Task<(int ExitCode, string Output, string Error)> CurlAsync(params string[] args)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-sS", "--noproxy", "*", "--max-time", "10" }.Concat(args))
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Timeouts.Short);
        return (process.ExitCode, await output, await error);
    }

    [Theory]
    [InlineData("--http1.1", "HTTP/1.1")]
    [InlineData("--http1.0", "HTTP/1.0")]
    public async Task HandleAsync_Curl_GetAndPostThroughProxy(string flag, string protocol)
    {
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            using var reader = new StreamReader(ctx.Request.Body);
            var body = await reader.ReadToEndAsync();
            await ctx.Response.WriteAsync($"{ctx.Request.Protocol} {ctx.Request.Method} {ctx.Request.Path} [{body}]");
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)));

        var get = await CurlAsync(flag, "-i", $"{proxy.BaseUri}hello");
        var post = await CurlAsync(flag, "--data-binary", "payload=1", $"{proxy.BaseUri}form");

        Assert.True(get.ExitCode == 0, get.Error);
        Assert.StartsWith("HTTP/1.1 200 OK", get.Output, StringComparison.Ordinal);
        Assert.EndsWith($"{protocol} GET /hello []", get.Output, StringComparison.Ordinal);
        Assert.True(post.ExitCode == 0, post.Error);
        Assert.Equal($"{protocol} POST /form [payload=1]", post.Output);
        var records = await proxy.Observer.WaitForAsync(2);
        Assert.All(records, r => Assert.Equal(protocol, r.Protocol));
        Assert.Equal(9, records[1].RequestBytes);
    }

    [Fact]
    public async Task HandleAsync_ExpectContinue_RelaysUpstream100ThenBody()
    {
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            using var reader = new StreamReader(ctx.Request.Body);
            await ctx.Response.WriteAsync($"got [{await reader.ReadToEndAsync()}]");
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        var interim = await client.Reader.ReadResponseAsync();
        Assert.Equal(100, interim.Status);
        await client.SendAsync("abcde");
        var final = await client.Reader.ReadResponseAsync();
        Assert.Equal(200, final.Status);
        Assert.Equal("got [abcde]", final.BodyText);
        Assert.Null(final.Header("connection"));

        // The connection goes on.
        await client.SendAsync("PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz");
        Assert.Equal("got [z]", (await client.Reader.ReadResponseAsync()).BodyText);
    }

    [Fact]
    public async Task HandleAsync_ExpectContinueAnsweredWithoutReadingBody_FinalStatusAndClose()
    {
        await using var upstream = await KestrelUpstream.StartAsync(ctx =>
        {
            ctx.Response.StatusCode = 413;
            return ctx.Response.WriteAsync("too big");
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("POST /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n");
        var final = await client.Reader.ReadResponseAsync();

        Assert.Equal(413, final.Status);
        Assert.Equal("too big", final.BodyText);
        Assert.Equal("close", final.Header("connection"));
        Assert.True(await client.Reader.IsAtEndAsync());
        var record = (await proxy.Observer.WaitForAsync(1))[0];
        Assert.Equal(413, record.StatusCode);
        Assert.Equal(0, record.RequestBytes);
    }

    [Fact]
    public async Task HandleAsync_WebSocketThroughProxy_EchoesMessages()
    {
        await using var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            if (!ctx.WebSockets.IsWebSocketRequest)
            {
                ctx.Response.StatusCode = 400;
                return;
            }

            using var socket = await ctx.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var result = await socket.ReceiveAsync(buffer, CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                    return;
                }

                await socket.SendAsync(buffer.AsMemory(0, result.Count), result.MessageType, result.EndOfMessage, CancellationToken.None);
            }
        }, webSockets: true);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("ws", upstream.EndPoint)));
        using var ws = new ClientWebSocket();
        using var timeout = new CancellationTokenSource(Timeouts.Short);

        await ws.ConnectAsync(new Uri($"ws://{proxy.EndPoint}/echo"), timeout.Token);
        var buffer = new byte[64 * 1024];
        foreach (var message in new[] { "hello", new string('x', 40_000), "last" })
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes(message), WebSocketMessageType.Text, true, timeout.Token);
            var received = new StringBuilder();
            WebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer, timeout.Token);
                received.Append(Encoding.UTF8.GetString(buffer, 0, result.Count));
            }
            while (!result.EndOfMessage);
            Assert.Equal(message, received.ToString());
        }

        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, ws.CloseStatus);
        var record = (await proxy.Observer.WaitForAsync(1))[0];
        Assert.Equal(101, record.StatusCode);
        Assert.True(record.RequestBytes > 40_000);
        Assert.True(record.ResponseBytes > 40_000);
        Assert.Null(record.Error);
    }

    [Fact]
    public async Task HandleAsync_Connect_TunnelsBytesIncludingThoseSentWithTheHead()
    {
        string? connectHead = null;
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new NetworkStream(socket, ownsSocket: false);
            var reader = new RawHttpReader(stream);
            connectHead = await reader.ReadHeadAsync();
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 Connection Established\r\n\r\n");
            var buffer = new byte[4096];
            int n;
            while ((n = await reader.ReadRawAsync(buffer)) > 0)
            {
                await socket.SendAsync(buffer.AsMemory(0, n));
            }

            socket.Shutdown(SocketShutdown.Send);
        });
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address, "egress"));
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\nearly-bytes|");
        var head = await client.Reader.ReadHeadAsync();
        Assert.Equal("HTTP/1.1 200 Connection Established", head);
        await client.SendAsync("later-bytes");
        client.Socket.Shutdown(SocketShutdown.Send);
        var echoed = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await client.Reader.ReadRawAsync(buffer)) > 0)
        {
            echoed.Write(buffer, 0, read);
        }

        Assert.Equal("early-bytes|later-bytes", Encoding.ASCII.GetString(echoed.ToArray()));
        Assert.Equal("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432", connectHead);
        var record = (await proxy.Observer.WaitForAsync(1))[0];
        Assert.Equal(200, record.StatusCode);
        Assert.Equal("CONNECT", record.Method);
        Assert.Equal("db.example:5432", record.Authority);
        Assert.Equal(23, record.RequestBytes);
    }
}

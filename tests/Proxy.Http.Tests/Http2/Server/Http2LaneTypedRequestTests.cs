using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Server;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// An HTTP/2 client's request head reaches the forwarder parsed by the HTTP/2 side (no HTTP/1.1 head written into
/// the lane and parsed there). The upstream must receive the same bytes, the client the same answer and the access
/// log the same record as through the text path (the <see cref="Http1ForwarderOptions.TextHeadsForHttp2"/> seam).
/// </summary>
public sealed class Http2LaneTypedRequestTests
{
    public sealed record Case(string Name, (string Name, string Value)[] Fields, string[] Data, (string Name, string Value)[]? Trailers = null)
    {
        public override string ToString() => Name;
    }

    private static (string, string)[] Get(string path, params (string, string)[] extra) =>
        [(":method", "GET"), (":scheme", "http"), (":authority", "svc.test"), (":path", path), .. extra];

    private static (string, string)[] With(string method, string path, params (string, string)[] extra) =>
        [(":method", method), (":scheme", "http"), (":authority", "svc.test:8080"), (":path", path), .. extra];

    public static TheoryData<Case> Cases() =>
    [
        new Case("get", Get("/a/b?c=d&e", ("accept", "*/*"), ("user-agent", "t/1"), ("x-custom", "v 1"), ("cookie", "a=1"), ("cookie", "b=2")), []),
        new Case("host-equal", Get("/", ("host", "svc.test"), ("accept-encoding", "gzip")), []),
        new Case("head", With("HEAD", "/len"), []),
        new Case("options-asterisk", With("OPTIONS", "*"), []),
        new Case("delete", With("DELETE", "/item/7", ("if-match", "\"x\"")), []),
        new Case("post-length", With("POST", "/p", ("content-length", "5"), ("content-type", "text/plain")), ["hello"]),
        new Case("post-chunked", With("POST", "/c"), ["abc", "def"]),
        new Case("post-empty-length", With("PUT", "/e", ("content-length", "0")), []),
        new Case("grpc-trailers", With("POST", "/pkg.Svc/Call", ("te", "trailers"), ("content-type", "application/grpc"), ("grpc-timeout", "5S")),
            ["\0\0\0\0\u0003abc"], [("x-trailer", "t")]),
        new Case("registered-extension-method", With("PROPFIND", "/dav", ("depth", "1")), []),
        new Case("unknown-method-refused", With("FROB", "/x"), []),
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task TypedRequestHead_UpstreamClientAndLogSeeWhatTheTextPathGives(Case c)
    {
        var typed = await RunAsync(c, text: false);
        var text = await RunAsync(c, text: true);

        Assert.Equal(text.Upstream, typed.Upstream);
        Assert.Equal(text.Response.Status, typed.Response.Status);
        Assert.Equal(text.Response.BodyText, typed.Response.BodyText);
        Assert.Equal(Without(text.Response.Headers), Without(typed.Response.Headers));
        Assert.Equal(text.Record with { Duration = default, UpstreamDuration = null, Endpoint = null }, typed.Record with { Duration = default, UpstreamDuration = null, Endpoint = null });
        if (c.Name.EndsWith("-refused", StringComparison.Ordinal))
        {
            Assert.Empty(typed.Upstream);
            Assert.True(typed.Response.Status >= 400);
        }
        else
        {
            Assert.Single(typed.Upstream);
            Assert.Equal(200, typed.Response.Status);
        }
    }

    [Fact]
    public async Task TypedRequestHead_ManyStreamsOnOneConnection_EachUpstreamRequestIsItsOwn()
    {
        // Lanes are reused stream after stream: the head swapped between the lane and the forwarder must never carry a
        // previous stream's fields. Sequential and then concurrent streams with distinct paths and fields.
        var seen = new ConcurrentQueue<string>();
        using var upstream = Upstream(seen);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address), new Http1ForwarderOptions(), http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        uint id = 1;
        for (var i = 0; i < 20; i++, id += 2)
        {
            await h2.SendHeadersAsync(id, true, Get($"/seq/{i}", ($"x-n{i}", i.ToString(System.Globalization.CultureInfo.InvariantCulture))));
            Assert.Equal(200, (await h2.ReadResponseAsync(id)).Status);
        }

        var ids = new List<uint>();
        for (var i = 0; i < 10; i++, id += 2)
        {
            await h2.SendHeadersAsync(id, true, Get($"/par/{i}", ("x-p", new string((char)('a' + i), i + 1))));
            ids.Add(id);
        }

        // The answers interleave: read frames until every stream has ended, each with a 200.
        var statuses = new Dictionary<uint, string>();
        var ended = new HashSet<uint>();
        while (ended.Count < ids.Count)
        {
            var frame = await h2.ReadFrameAsync() ?? throw new InvalidOperationException("closed before the responses ended");
            if (frame.Type == H2Frame.Headers)
            {
                statuses.TryAdd(frame.StreamId, h2.Decode(frame.Payload).First(f => f.Name == ":status").Value);
            }

            if (frame.EndStream && ids.Contains(frame.StreamId))
            {
                ended.Add(frame.StreamId);
            }
        }

        Assert.All(ids, i => Assert.Equal("200", statuses[i]));

        var heads = seen.ToArray();
        Assert.Equal(30, heads.Length);
        for (var i = 0; i < 20; i++)
        {
            var head = Assert.Single(heads, h => h.StartsWith($"GET /seq/{i} ", StringComparison.Ordinal));
            Assert.Contains($"\r\nx-n{i}: {i}", head, StringComparison.Ordinal);
            Assert.Equal(1, head.Split("\r\nx-n").Length - 1);
        }

        for (var i = 0; i < 10; i++)
        {
            var head = Assert.Single(heads, h => h.StartsWith($"GET /par/{i} ", StringComparison.Ordinal));
            Assert.Contains($"\r\nx-p: {new string((char)('a' + i), i + 1)}\r\n", head + "\r\n", StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Lane_TypedRequest_ParsedCopySwappedOnceAndRefusalsLeaveNothing()
    {
        var lane = new Http2Lane(null, null, System.Buffers.MemoryPool<byte>.Shared);
        var parser = new Http1RequestHeadParser();
        var forwarders = new Http1RequestHead();
        var head = forwarders;

        Assert.False(lane.TryTakeTypedRequest(ref head));
        Assert.False(lane.TrySetTypedRequest("FROB /x HTTP/1.1\r\nhost: a\r\n\r\n"u8, parser));
        Assert.False(lane.TrySetTypedRequest("GET /x HTTP/1.1\r\nhost: a\r\n"u8, parser));
        Assert.False(lane.TryTakeTypedRequest(ref head));
        Assert.Same(forwarders, head);

        var text = Encoding.ASCII.GetBytes("POST /y HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n");
        Assert.True(lane.TrySetTypedRequest(text, parser));
        // The lane parsed its own copy: the caller's buffer may be reused at once.
        Array.Fill(text, (byte)'#');
        Assert.True(lane.TryTakeTypedRequest(ref head));
        Assert.NotSame(forwarders, head);
        Assert.Equal(Http1Method.Post, head.Method);
        Assert.Equal("/y", Encoding.ASCII.GetString(head.Target));
        Assert.Equal("b", Encoding.ASCII.GetString(head.Host));
        Assert.Equal(Http1BodyKind.Chunked, head.BodyKind);
        Assert.False(lane.TryTakeTypedRequest(ref head));

        // The next head is parsed into the forwarder's previous one, never into the one it holds now.
        var current = head;
        Assert.True(lane.TrySetTypedRequest("GET /z HTTP/1.1\r\nhost: c\r\n\r\n"u8, parser));
        Assert.Equal("/y", Encoding.ASCII.GetString(current.Target));
        Assert.True(lane.TryTakeTypedRequest(ref head));
        Assert.Same(forwarders, head);
        Assert.Equal("/z", Encoding.ASCII.GetString(head.Target));
        current.Dispose();
        head.Dispose();
        await lane.DisposeAsync().AsTask().WaitAsync(Timeouts.Short);
    }

    private static List<(string Name, string Value)> Without(List<(string Name, string Value)> headers) =>
        [.. headers.Where(h => h.Name != "date")];

    private sealed record Run(string[] Upstream, H2Response Response, RecordedRequest Record);

    private static async Task<Run> RunAsync(Case c, bool text)
    {
        var seen = new ConcurrentQueue<string>();
        using var upstream = Upstream(seen);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address), new Http1ForwarderOptions { TextHeadsForHttp2 = text }, http2: true);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var last = c.Data.Length == 0 && c.Trailers is null;
        await h2.SendHeadersAsync(1, last, c.Fields);
        for (var i = 0; i < c.Data.Length; i++)
        {
            await h2.SendDataAsync(1, Encoding.Latin1.GetBytes(c.Data[i]), endStream: i == c.Data.Length - 1 && c.Trailers is null);
        }

        if (c.Trailers is { } trailers)
        {
            await h2.SendHeadersAsync(1, true, trailers);
        }

        var response = await h2.ReadResponseAsync(1);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        return new Run([.. seen], response, record);
    }

    // Records each request's head and body exactly as received (CL or chunked framing included) and answers "ok".
    private static RawUpstream Upstream(ConcurrentQueue<string> seen) => new(async (socket, _) =>
    {
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var reader = new RawHttpReader(stream);
        while (await reader.ReadHeadAsync() is { } head)
        {
            var request = new StringBuilder(head).Append("\r\n\r\n");
            var lower = head.ToLowerInvariant();
            var buffer = new byte[4096];
            if (lower.Contains("\r\ncontent-length: ", StringComparison.Ordinal))
            {
                var at = lower.IndexOf("\r\ncontent-length: ", StringComparison.Ordinal) + 18;
                var end = lower.IndexOf('\r', at);
                var remaining = int.Parse(end < 0 ? lower[at..] : lower[at..end], System.Globalization.CultureInfo.InvariantCulture);
                while (remaining > 0)
                {
                    var n = await reader.ReadRawAsync(buffer.AsMemory(0, Math.Min(remaining, buffer.Length))).WaitAsync(Timeouts.Short);
                    Assert.True(n > 0);
                    request.Append(Encoding.Latin1.GetString(buffer, 0, n));
                    remaining -= n;
                }
            }
            else if (lower.Contains("\r\ntransfer-encoding: chunked", StringComparison.Ordinal))
            {
                // Until the last chunk and the trailer section's end.
                var body = new StringBuilder();
                while (!(body.ToString().StartsWith("0\r\n", StringComparison.Ordinal) || body.ToString().Contains("\r\n0\r\n", StringComparison.Ordinal)) || !body.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
                {
                    var n = await reader.ReadRawAsync(buffer.AsMemory(0, 1)).WaitAsync(Timeouts.Short);
                    Assert.True(n > 0);
                    body.Append(Encoding.Latin1.GetString(buffer, 0, n));
                }

                request.Append(body);
            }

            seen.Enqueue(request.ToString());
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
}

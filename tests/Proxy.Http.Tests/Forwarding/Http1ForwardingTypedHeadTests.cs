using System.Net;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Routing;
using Proxy.Http.Tests.Http2;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Hpack;
using Proxy.Http.Tests.Http2.Server;
using Proxy.Http.Tests.Http2.Upstream;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>
/// Request heads for HTTP/2 upstreams are handed to the exchange as a field list the forwarder fills (typed) rather
/// than as HTTP/1.1 text the exchange parses and maps again. Both ways must put the same HEADERS on the wire: each case
/// goes through a forwarder of each kind (the text one through the <see cref="Http1ForwarderOptions.TextHeadsForHttp2"/>
/// seam) and the decoded fields are compared, in order.
/// </summary>
public sealed class Http1ForwardingTypedHeadTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "plain GET", "GET /a?b=c HTTP/1.1\r\nHost: svc:8080\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n" },
        { "hop-by-hop and TE", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nX-Custom: v\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n" },
        { "TE without trailers", "GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n" },
        { "route mutations", "GET /m HTTP/1.1\r\nHost: h\r\nX-Env: dev\r\nX-Tag: client\r\nX-Drop: please\r\nX-Keep: yes\r\n\r\n" },
        { "Content-Length body", "POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello" },
        { "chunked body", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
        { "absolute form", "GET http://other.example:81/p?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n" },
        { "absolute form, query without path", "GET http://other.example?q HTTP/1.1\r\nHost: x\r\n\r\n" },
        { "HTTP/1.0 without Host", "GET /old HTTP/1.0\r\nX-A: 1\r\n\r\n" },
        { "HEAD", "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n" },
        { "extension method", "PURGE /cache HTTP/1.1\r\nHost: h\r\n\r\n" },
    };

    private static Http1Routing Routing(IPEndPoint upstream, HeaderMutationsConfig? requestHeaders = null)
    {
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream]) { UpstreamProtocol = UpstreamProtocol.Http2 }]);
        var action = new RouteActionConfig
        {
            Destinations = [new WeightedDestinationConfig("web")],
            RequestHeaders = requestHeaders ?? new HeaderMutationsConfig { Set = [new("x-env", "prod")], Add = [new("x-tag", "proxy")], Remove = ["x-drop"] },
        };
        return Http1Routing.ForRoutes(new RouteTable([new RouteConfig { Name = "r", Match = new RouteMatchConfig(), Action = action }]), registry.FindByName);
    }

    /// <summary>
    /// The request through a forwarder (typed or text heads) to a raw HTTP/2 server: the HEADERS it sent, decoded (an
    /// :authority naming the server's own address, the HTTP/1.0-without-Host case, reads "upstream"), and the client's
    /// status. <paramref name="refused"/>: the head is expected never to reach the server (the client's status only).
    /// </summary>
    private static async Task<(List<(string Name, string Value)> Fields, int Status)> ForwardAsync(string request, bool text, HeaderMutationsConfig? mutations = null, Http2UpstreamPoolOptions? poolOptions = null, bool refused = false, Func<IPEndPoint, Http1Routing>? routing = null)
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector, poolOptions);
        // Request ids made (a random UUID each time) so both ways are compared with the same field in the same place.
        await using var proxy = await ForwarderHarness.StartAsync(routing?.Invoke(server.EndPoint) ?? Routing(server.EndPoint, mutations), new Http1ForwarderOptions { TextHeadsForHttp2 = text, RequestId = Proxy.Core.Configuration.RequestIdMode.Generate }, http2Pool: pool);
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);
        await client.SendAsync(request);
        var method = request[..request.IndexOf(' ', StringComparison.Ordinal)];
        await server.AcceptAsync();
        await server.HandshakeAsync();
        if (refused)
        {
            return ([], (await client.Reader.ReadResponseAsync(method)).Status);
        }

        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        Assert.True((headers.Flags & 0x4) != 0, "one HEADERS frame with END_HEADERS");
        using var decoder = new HpackDecoder();
        var upstream = server.EndPoint.ToString();
        var fields = Hpack.DecodeBlock(decoder, headers.Payload)
            .Select(f => f.Name == ":authority" && f.Value == upstream ? (f.Name, "upstream") : f)
            .Select(f => f.Name == "x-request-id" && Guid.TryParseExact(f.Item2, "D", out _) ? (f.Name, "made") : f).ToList();
        await server.SendHeadersAsync(headers.StreamId, true, (":status", "204"));
        var response = await client.Reader.ReadResponseAsync(method);
        return (fields, response.Status);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task TypedHead_SameHeadersOnTheWireAsTheTextPath(string name, string request)
    {
        var typed = await ForwardAsync(request, text: false);
        var text = await ForwardAsync(request, text: true);

        Assert.Equal(text.Fields, typed.Fields);
        Assert.Equal(204, typed.Status);
        Assert.Equal(204, text.Status);
        Assert.NotEmpty(name);
    }

    [Fact]
    public async Task TypedHead_RouteSetsHost_AuthorityFollowsIt()
    {
        var mutations = new HeaderMutationsConfig { Set = [new("host", "rewritten.example")] };
        const string Request = "GET /r HTTP/1.1\r\nHost: original.example\r\nX-A: 1\r\n\r\n";

        var typed = await ForwardAsync(Request, text: false, mutations);
        var text = await ForwardAsync(Request, text: true, mutations);

        Assert.Equal(text.Fields, typed.Fields);
        Assert.Contains((":authority", "rewritten.example"), typed.Fields);
        Assert.DoesNotContain(typed.Fields, f => f.Name == "host");
    }

    [Theory]
    [InlineData("GET /api/users?id=7 HTTP/1.1\r\nHost: h\r\n\r\n", "/v2/users?id=7", "backend.internal")]
    [InlineData("GET http://abs.example/api?q HTTP/1.1\r\nHost: x\r\n\r\n", "/v2?q", "backend.internal")]
    public async Task TypedHead_RouteRewritesPathAndHost_SameAsTheTextPath(string request, string path, string authority)
    {
        static Http1Routing Rewriting(IPEndPoint upstream)
        {
            var registry = new ServiceRegistry([new ServiceConfig("web", [], [upstream]) { UpstreamProtocol = UpstreamProtocol.Http2 }]);
            var routes = RouteConfigReader.ReadJson("""
                [{ "match": { "path": { "segmentPrefix": "/api" } }, "action": { "service": "web", "rewrite": { "pathPrefix": "/v2", "host": "backend.internal" } } }]
                """);
            return Http1Routing.ForRoutes(new RouteTable(routes.Routes!), registry.FindByName);
        }

        var typed = await ForwardAsync(request, text: false, routing: Rewriting);
        var text = await ForwardAsync(request, text: true, routing: Rewriting);

        Assert.Equal(text.Fields, typed.Fields);
        Assert.Contains((":path", path), typed.Fields);
        Assert.Contains((":authority", authority), typed.Fields);
        Assert.Equal(204, typed.Status);
    }

    [Fact]
    public async Task TypedHead_ThePoolsRequestParserIsNotInvolved()
    {
        // Limits the text path's parse of the forwarded head to two fields; the typed path parses nothing.
        var strict = new Http2UpstreamPoolOptions { RequestParser = new Http2UpstreamPoolOptions().RequestParser with { MaxHeaderCount = 2 } };
        const string Request = "GET /many HTTP/1.1\r\nHost: h\r\nX-1: 1\r\nX-2: 2\r\nX-3: 3\r\n\r\n";

        var typed = await ForwardAsync(Request, text: false, new HeaderMutationsConfig(), strict);
        var text = await ForwardAsync(Request, text: true, new HeaderMutationsConfig(), strict, refused: true);

        Assert.Equal(204, typed.Status);
        Assert.Equal([(":method", "GET"), (":scheme", "http"), (":authority", "h"), (":path", "/many"), ("x-1", "1"), ("x-2", "2"), ("x-3", "3"), ("x-request-id", "made")], typed.Fields);
        Assert.Equal(502, text.Status);
    }

    // ---- response heads -------------------------------------------------------------------------------

    private static byte[] Headers(uint id, bool endStream, params (string Name, string Value)[] fields) =>
        FrameBytes.Frame(Proxy.Http.Http2.Http2FrameType.Headers, (byte)(0x4 | (endStream ? 0x1 : 0)), id, H2TestConnection.EncodeBlock(fields));

    private static byte[] Data(uint id, bool endStream, string text) =>
        FrameBytes.Frame(Proxy.Http.Http2.Http2FrameType.Data, (byte)(endStream ? 0x1 : 0), id, System.Text.Encoding.ASCII.GetBytes(text));

    public static TheoryData<string, string, Func<uint, byte[]>> ResponseCases => new()
    {
        { "length and body", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", id => FrameBytes.Concat(Headers(id, false, (":status", "200"), ("content-length", "5"), ("x-a", "1"), ("server", "s")), Data(id, true, "hello")) },
        { "no length: chunked", "GET /b HTTP/1.1\r\nHost: h\r\n\r\n", id => FrameBytes.Concat(Headers(id, false, (":status", "200"), ("content-type", "text/plain")), Data(id, false, "abc"), Data(id, true, "def")) },
        { "204", "DELETE /c HTTP/1.1\r\nHost: h\r\n\r\n", id => Headers(id, true, (":status", "204"), ("x-b", "2")) },
        { "HEAD with length", "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n", id => Headers(id, true, (":status", "200"), ("content-length", "42")) },
        { "304", "GET /e HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n", id => Headers(id, true, (":status", "304"), ("etag", "\"x\"")) },
        { "trailers to a client that takes them", "GET /f HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", id => FrameBytes.Concat(Headers(id, false, (":status", "200"), ("content-length", "3")), Data(id, false, "abc"), Headers(id, true, ("grpc-status", "0"))) },
        { "interim 103 first", "GET /g HTTP/1.1\r\nHost: h\r\n\r\n", id => FrameBytes.Concat(Headers(id, false, (":status", "103"), ("link", "</s.css>")), Headers(id, false, (":status", "200"), ("content-length", "2")), Data(id, true, "ok")) },
        { "404 with body", "GET /h HTTP/1.1\r\nHost: h\r\n\r\n", id => FrameBytes.Concat(Headers(id, false, (":status", "404"), ("content-length", "9")), Data(id, true, "not found")) },
    };

    /// <summary>The request through a forwarder (typed or text heads) to a raw HTTP/2 server answering <paramref name="answer"/>; what the client got.</summary>
    private static async Task<RawResponse> AnswerAsync(string request, Func<uint, byte[]> answer, bool text, Http1ForwarderOptions? options = null)
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Routing(server.EndPoint, new HeaderMutationsConfig()), (options ?? new Http1ForwarderOptions()) with { TextHeadsForHttp2 = text }, http2Pool: pool);
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);
        await client.SendAsync(request);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await server.SendRawAsync(answer(headers.StreamId));
        return await client.Reader.ReadResponseAsync(request[..request.IndexOf(' ', StringComparison.Ordinal)]);
    }

    [Theory]
    [MemberData(nameof(ResponseCases))]
    public async Task TypedResponseHead_TheClientGetsTheSameBytesAsThroughTheTextPath(string name, string request, Func<uint, byte[]> answer)
    {
        var typed = await AnswerAsync(request, answer, text: false);
        var text = await AnswerAsync(request, answer, text: true);

        Assert.Equal(text.Head, typed.Head);
        Assert.Equal(text.Body, typed.Body);
        Assert.NotEmpty(name);
    }

    [Fact]
    public async Task TypedResponseHead_TheForwardersResponseParserIsNotInvolved()
    {
        // The forwarder's parser takes three fields at most: the text path's response head (five) is refused, 502.
        var strict = new Http1ForwarderOptions { Parser = Proxy.Http.Http1.Http1ParserOptions.Default with { MaxHeaderCount = 3 } };
        const string Request = "GET /many HTTP/1.1\r\nHost: h\r\n\r\n";
        static byte[] Answer(uint id) => FrameBytes.Concat(
            Headers(id, false, (":status", "200"), ("content-length", "2"), ("x-1", "1"), ("x-2", "2"), ("x-3", "3"), ("x-4", "4")), Data(id, true, "ok"));

        var typed = await AnswerAsync(Request, Answer, text: false, strict);
        var text = await AnswerAsync(Request, Answer, text: true, strict);

        Assert.Equal(200, typed.Status);
        Assert.Equal("ok", typed.BodyText);
        Assert.Equal("4", typed.Header("x-4"));
        Assert.Equal(502, text.Status);
    }
}

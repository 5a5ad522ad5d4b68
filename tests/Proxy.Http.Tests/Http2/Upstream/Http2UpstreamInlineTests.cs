using System.Net;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>
/// The response reaches the forwarder inline from the client connection's frame loop: END_STREAM must be applied before
/// the forwarder sees a complete response, or its Return would reset a stream that is already complete.
/// </summary>
public sealed class Http2UpstreamInlineTests
{
    [Fact]
    public async Task CompleteResponses_EndStreamOnDataOrHeaders_NoRstStreamSent()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();
        var seen = new List<H2Frame>();

        var first = client.GetStringAsync("/body");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers, seen);
        // END_STREAM on the DATA frame that completes the content-length body.
        await server.SendHeadersAsync(headers.StreamId, false, (":status", "200"), ("content-length", "5"));
        await server.SendAsync(H2Frame.Data, 0x1, headers.StreamId, "hello"u8.ToArray());
        Assert.Equal("hello", await first.WaitAsync(Timeouts.Short));

        var second = client.GetAsync("/empty");
        var nextHeaders = await server.ReadUntilAsync(H2Frame.Headers, seen);
        // END_STREAM on the HEADERS frame of a response without a body.
        await server.SendHeadersAsync(nextHeaders.StreamId, true, (":status", "204"));
        using var response = await second.WaitAsync(Timeouts.Short);
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);

        // Whatever the client sent about those streams is on the wire before its answer to this PING.
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        await server.ReadUntilAsync(H2Frame.Ping, seen);
        Assert.DoesNotContain(seen, f => f.Type == H2Frame.RstStream);
        Assert.Equal(1, pool.ConnectionsOpened);
    }
}

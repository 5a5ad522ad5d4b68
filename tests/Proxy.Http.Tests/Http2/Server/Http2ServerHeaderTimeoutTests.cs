using System.Diagnostics;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Http.Forwarding;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// The header read timeout for HTTP/2 clients (slowloris): a header block left open (HEADERS without END_HEADERS, or a
/// header frame only partly sent) ends the connection with GOAWAY(ENHANCE_YOUR_CALM); one completed in time is served.
/// </summary>
public sealed class Http2ServerHeaderTimeoutTests
{
    private const uint EnhanceYourCalm = 0xb;

    private static async Task<(ForwarderHarness Proxy, KestrelUpstream Upstream)> StartAsync()
    {
        var upstream = await KestrelUpstream.StartAsync(ctx => ctx.Response.WriteAsync("ok"));
        var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)),
            new Http1ForwarderOptions { HeaderTimeout = TimeSpan.FromMilliseconds(300) }, http2: true);
        return (proxy, upstream);
    }

    private static readonly (string Name, string Value)[] Get = [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/x")];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task HeaderBlockLeftOpen_GoAwayEnhanceYourCalm(bool partialFrame)
    {
        var (proxy, upstream) = await StartAsync();
        await using var _ = upstream;
        await using var __ = proxy;
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var block = H2TestConnection.EncodeBlock(Get);
        if (partialFrame)
        {
            // A HEADERS frame header announcing the whole block, and only its first byte.
            var frame = new byte[9 + 1];
            frame[2] = (byte)block.Length;
            frame[3] = H2Frame.Headers;
            frame[4] = 0x4 | 0x1;
            frame[8] = 1;
            frame[9] = block[0];
            await h2.SendRawAsync(frame);
        }
        else
        {
            // END_STREAM without END_HEADERS: the block must go on in CONTINUATION frames, and never does.
            await h2.SendFrameAsync(H2Frame.Headers, 0x1, 1, block[..2]);
        }

        var clock = Stopwatch.StartNew();
        var frames = await h2.ReadToEndAsync().WaitAsync(Timeouts.Short);
        var goAway = Assert.Single(frames, f => f.Type == H2Frame.GoAway);
        Assert.Equal(EnhanceYourCalm, goAway.ErrorCode);
        Assert.Contains("header timeout of 300 ms", Encoding.ASCII.GetString(goAway.Payload, 8, goAway.Payload.Length - 8), StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(200), Timeouts.Short);
        Assert.DoesNotContain(frames, f => f.Type == H2Frame.Headers);
    }

    [Fact]
    public async Task HeaderBlockInPieces_CompletedInTime_Served()
    {
        var (proxy, upstream) = await StartAsync();
        await using var _ = upstream;
        await using var __ = proxy;
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var block = H2TestConnection.EncodeBlock(Get);
        await h2.SendFrameAsync(H2Frame.Headers, 0x1, 1, block[..2]);
        await h2.SendFrameAsync(H2Frame.Continuation, 0x4, 1, block[2..]);
        var response = await h2.ReadResponseAsync(1).WaitAsync(Timeouts.Short);
        Assert.Equal(200, response.Status);
        Assert.Equal("ok", response.BodyText);
    }
}

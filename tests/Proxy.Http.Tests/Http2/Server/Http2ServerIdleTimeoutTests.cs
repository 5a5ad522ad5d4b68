using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Http.Forwarding;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// The connection idle timeout for HTTP/2 clients (the forwarder's IdleTimeout, --http-idle-timeout): a connection with
/// no open stream for that long ends with GOAWAY(NO_ERROR) naming the last stream processed, then closes; a stream
/// that outlasts the timeout keeps the connection open.
/// </summary>
public sealed class Http2ServerIdleTimeoutTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromMilliseconds(400);

    private static async Task<(ForwarderHarness Proxy, KestrelUpstream Upstream)> StartAsync(TimeSpan responseDelay = default)
    {
        var upstream = await KestrelUpstream.StartAsync(async ctx =>
        {
            if (responseDelay > TimeSpan.Zero)
            {
                await Task.Delay(responseDelay);
            }

            await ctx.Response.WriteAsync("ok");
        });
        var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)),
            new Http1ForwarderOptions { IdleTimeout = Idle }, http2: true);
        return (proxy, upstream);
    }

    [Fact]
    public async Task NoStreamForTheIdleTimeout_GoAwayNoErrorWithTheLastStream_ThenClosed()
    {
        var (proxy, upstream) = await StartAsync();
        await using var _ = upstream;
        await using var __ = proxy;
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        await h2.SendGetAsync(1, "/a");
        Assert.Equal("ok", (await h2.ReadResponseAsync(1).WaitAsync(Timeouts.Short)).BodyText);
        await h2.SendGetAsync(3, "/b");
        Assert.Equal("ok", (await h2.ReadResponseAsync(3).WaitAsync(Timeouts.Short)).BodyText);

        var clock = Stopwatch.StartNew();
        var frames = await h2.ReadToEndAsync().WaitAsync(Timeouts.Short);
        var goAway = Assert.Single(frames, f => f.Type == H2Frame.GoAway);
        Assert.Equal(0u, goAway.ErrorCode);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(goAway.Payload) & 0x7fff_ffffu);
        Assert.Contains("idle timeout: no stream for 400 ms", Encoding.ASCII.GetString(goAway.Payload, 8, goAway.Payload.Length - 8), StringComparison.Ordinal);
        // At least the timeout, less the part of a tick already under way when the last stream ended.
        Assert.InRange(clock.Elapsed, Idle * 0.7, Timeouts.Short);
    }

    [Fact]
    public async Task ConnectionThatNeverOpensAStream_ClosedAfterTheIdleTimeout()
    {
        var (proxy, upstream) = await StartAsync();
        await using var _ = upstream;
        await using var __ = proxy;
        var clock = Stopwatch.StartNew();
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var frames = await h2.ReadToEndAsync().WaitAsync(Timeouts.Short);
        var goAway = Assert.Single(frames, f => f.Type == H2Frame.GoAway);
        Assert.Equal(0u, goAway.ErrorCode);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(goAway.Payload) & 0x7fff_ffffu);
        Assert.InRange(clock.Elapsed, Idle * 0.9, Timeouts.Short);
    }

    [Fact]
    public async Task StreamOpenLongerThanTheIdleTimeout_Answered_TheConnectionClosesOnlyAfterIt()
    {
        var (proxy, upstream) = await StartAsync(responseDelay: Idle * 3);
        await using var _ = upstream;
        await using var __ = proxy;
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        await h2.SendGetAsync(1, "/slow");

        // The response comes after three idle timeouts, on a connection that is still open.
        var response = await h2.ReadResponseAsync(1).WaitAsync(Timeouts.Short);
        Assert.Equal(200, response.Status);
        Assert.Equal("ok", response.BodyText);

        var frames = await h2.ReadToEndAsync().WaitAsync(Timeouts.Short);
        var goAway = Assert.Single(frames, f => f.Type == H2Frame.GoAway);
        Assert.Equal(0u, goAway.ErrorCode);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(goAway.Payload) & 0x7fff_ffffu);
    }
}

using System.Buffers.Binary;
using Microsoft.AspNetCore.Http;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>
/// The HTTP/2 flood defences: each attack ends with GOAWAY and the right code after a bounded amount of work
/// (counted as requests that reached the upstream, or frames answered), and honest use under the limits is unharmed.
/// </summary>
public sealed class Http2ServerDefenceTests
{
    private const uint Cancel = 0x8, EnhanceYourCalm = 0xb;

    private sealed class CountingUpstream : IAsyncDisposable
    {
        private int _requests;

        private CountingUpstream(KestrelUpstream upstream) => Upstream = upstream;

        public KestrelUpstream Upstream { get; }

        public int Requests => Volatile.Read(ref _requests);

        public static async Task<CountingUpstream> StartAsync()
        {
            CountingUpstream? self = null;
            var upstream = await KestrelUpstream.StartAsync(async ctx =>
            {
                Interlocked.Increment(ref self!._requests);
                if (ctx.Request.Path == "/hold")
                {
                    await Task.Delay(Timeout.Infinite, ctx.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    return;
                }

                var size = ctx.Request.Query.TryGetValue("size", out var s) ? int.Parse(s!, System.Globalization.CultureInfo.InvariantCulture) : 2;
                await ctx.Response.WriteAsync(new string('k', size));
            });
            self = new CountingUpstream(upstream);
            return self;
        }

        public ValueTask DisposeAsync() => Upstream.DisposeAsync();
    }

    private static Task<ForwarderHarness> ProxyAsync(CountingUpstream upstream, Http2ServerOptions options) =>
        ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.Upstream.EndPoint)), http2: true, http2Options: options);

    /// <summary>Sends frames until the server stops taking them (it closed the connection).</summary>
    private static async Task<int> SendUntilClosedAsync(H2TestConnection h2, int count, Func<int, Task> send)
    {
        for (var i = 0; i < count; i++)
        {
            try
            {
                await send(i);
            }
            catch (IOException)
            {
                return i;
            }
        }

        return count;
    }

    private static async Task<H2Frame> GoAwayAsync(H2TestConnection h2)
    {
        var frames = await h2.ReadToEndAsync();
        return Assert.Single(frames, f => f.Type == H2Frame.GoAway);
    }

    [Fact]
    public async Task RapidReset_StreamsOpenedAndReset_GoAwayEnhanceYourCalmAfterTheBudget()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxStreamResetsPerWindow = 20, FloodWindow = TimeSpan.FromMinutes(1) });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await SendUntilClosedAsync(h2, 2000, async i =>
        {
            var id = (uint)(2 * i + 1);
            await h2.SendGetAsync(id, "/hold");
            await h2.SendFrameAsync(H2Frame.RstStream, 0, id, [0, 0, 0, 8]);
        });
        var goAway = await GoAwayAsync(h2);

        Assert.Equal(EnhanceYourCalm, goAway.ErrorCode);
        // Bounded work: the streams past the budget never reached the upstream.
        Assert.InRange(upstream.Requests, 0, 21);
    }

    [Fact]
    public async Task RapidReset_UnderTheBudget_ConnectionServesOn()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxStreamResetsPerWindow = 20 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        for (uint id = 1; id < 20; id += 2)
        {
            await h2.SendGetAsync(id, "/hold");
            await h2.SendFrameAsync(H2Frame.RstStream, 0, id, [0, 0, 0, 8]);
        }

        await h2.SendGetAsync(21, "/fine");
        var response = await h2.ReadResponseAsync(21);

        Assert.Equal(200, response.Status);
    }

    [Fact]
    public async Task RefusedStreams_PastMaxConcurrentInALoop_CountAsResets()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxConcurrentStreams = 1, MaxStreamResetsPerWindow = 5 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/hold");
        await SendUntilClosedAsync(h2, 100, i => h2.SendGetAsync((uint)(2 * i + 3), "/more"));
        var goAway = await GoAwayAsync(h2);

        Assert.Equal(EnhanceYourCalm, goAway.ErrorCode);
        Assert.InRange(upstream.Requests, 0, 1);
    }

    [Fact]
    public async Task ContinuationFlood_EndlessHeaderBlock_GoAwayEnhanceYourCalm()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions());
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        // HEADERS without END_HEADERS, then CONTINUATIONs that never end the block (each carries one more field).
        await h2.SendFrameAsync(H2Frame.Headers, 0, 1, H2TestConnection.EncodeBlock([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]));
        var field = H2TestConnection.EncodeBlock([("x-flood", new string('f', 100))]);
        var sent = await SendUntilClosedAsync(h2, 100_000, _ => h2.SendFrameAsync(H2Frame.Continuation, 0, 1, field));
        var goAway = await GoAwayAsync(h2);

        Assert.Equal(EnhanceYourCalm, goAway.ErrorCode);
        // 10 MB of flood: the server stopped reading it (after the 64 KiB block cap and at most 1 MiB of lingering).
        Assert.True(sent < 100_000, "the server kept reading the flood");
        Assert.Equal(0, upstream.Requests);
    }

    [Fact]
    public async Task HpackBomb_SmallBlocksExpandingPastTheLimit_431ThenGoAway()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxHeaderListSize = 16 * 1024, MaxOversizedHeaderLists = 2 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var pseudo = H2TestConnection.EncodeBlock([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]);

        // Stream 1 puts one 4000-byte field into the dynamic table (literal with incremental indexing, new name).
        var insert = new List<byte>(pseudo) { 0x40, 5 };
        insert.AddRange("x-big"u8.ToArray());
        insert.AddRange([0x7f, (byte)((4000 - 127) % 128 | 0x80), (byte)((4000 - 127) / 128)]);
        insert.AddRange(Enumerable.Repeat((byte)'b', 4000));
        await h2.SendFrameAsync(H2Frame.Headers, 0x5, 1, [.. insert]);
        var first = await h2.ReadResponseAsync(1);
        Assert.Equal(200, first.Status);

        // Then: blocks of a few bytes that name it 20 times each (80 KB decoded from ~40 bytes).
        var bomb = pseudo.Concat(Enumerable.Repeat((byte)0xbe, 20)).ToArray();
        await h2.SendFrameAsync(H2Frame.Headers, 0x5, 3, bomb);
        var refused1 = await h2.ReadResponseAsync(3);
        await h2.SendFrameAsync(H2Frame.Headers, 0x5, 5, bomb);
        var refused2 = await h2.ReadResponseAsync(5);
        await h2.SendFrameAsync(H2Frame.Headers, 0x5, 7, bomb);
        var goAway = await GoAwayAsync(h2);

        Assert.Equal(431, refused1.Status);
        Assert.Equal(ProxyErrors.BadRequest, refused1.Header(ProxyErrors.HeaderName));
        Assert.Equal(431, refused2.Status);
        Assert.Equal(EnhanceYourCalm, goAway.ErrorCode);
        Assert.Equal(1, upstream.Requests);
    }

    [Theory]
    [InlineData(H2Frame.Settings)]
    [InlineData(H2Frame.Ping)]
    public async Task ControlFrameFlood_GoAwayEnhanceYourCalm(byte type)
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxControlFramesPerWindow = 50, FloodWindow = TimeSpan.FromMinutes(1) });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        var payload = type == H2Frame.Ping ? new byte[8] : [];

        await SendUntilClosedAsync(h2, 20_000, _ => h2.SendFrameAsync(type, 0, 0, payload));
        var frames = await h2.ReadToEndAsync();

        Assert.Equal(EnhanceYourCalm, Assert.Single(frames, f => f.Type == H2Frame.GoAway).ErrorCode);
        // Bounded: at most the budget was acknowledged.
        Assert.InRange(frames.Count(f => f.Type == type && (f.Flags & 1) != 0), 0, 51);
    }

    [Fact]
    public async Task ZeroWindowStall_StreamWindowClosed_StreamCancelledConnectionLives()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { SendStallTimeout = TimeSpan.FromMilliseconds(300) });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint, handshake: false);
        await h2.SendRawAsync(H2TestConnection.Preface);
        var settings = new byte[6];
        BinaryPrimitives.WriteUInt16BigEndian(settings, 0x4);
        await h2.SendFrameAsync(H2Frame.Settings, 0, 0, settings);

        await h2.SendGetAsync(1, "/big?size=1000");
        var (reset, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);
        await h2.SendFrameAsync(H2Frame.Ping, 0, 0, new byte[8]);
        var (pong, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.Ping);

        Assert.Equal(1u, reset.StreamId);
        Assert.Equal(Cancel, reset.ErrorCode);
        Assert.Equal(1, pong.Flags);
    }

    [Fact]
    public async Task ZeroWindowStall_ConnectionWindowClosed_GoAwayEnhanceYourCalm()
    {
        await using var upstream = await CountingUpstream.StartAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { SendStallTimeout = TimeSpan.FromMilliseconds(300) });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        // The stream window is opened wide, the connection window (65535) never: the response stalls on it.
        await h2.SendGetAsync(1, "/big?size=200000");
        var increment = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(increment, 1_000_000);
        await h2.SendFrameAsync(H2Frame.WindowUpdate, 0, 1, increment);
        var frames = await h2.ReadToEndAsync();

        Assert.Equal(65535, frames.Where(f => f.Type == H2Frame.Data).Sum(f => f.Payload.Length));
        Assert.Equal(EnhanceYourCalm, Assert.Single(frames, f => f.Type == H2Frame.GoAway).ErrorCode);
    }
}

using System.Buffers.Binary;
using Microsoft.AspNetCore.Http;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Server;

/// <summary>RFC 9113 rules on the server side, with hand-made frames: what is a stream error, what ends the connection.</summary>
public sealed class Http2ServerProtocolTests
{
    private const uint ProtocolError = 0x1, FlowControlError = 0x3, RefusedStream = 0x7, FrameSizeError = 0x6;

    private static Task<KestrelUpstream> UpstreamAsync(TaskCompletionSource? release = null) => KestrelUpstream.StartAsync(async ctx =>
    {
        if (release is not null && ctx.Request.Path == "/hold")
        {
            await release.Task.WaitAsync(Timeouts.Short);
        }

        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        await ctx.Response.WriteAsync(ctx.Request.Query.TryGetValue("size", out var size) ? new string('z', int.Parse(size!, System.Globalization.CultureInfo.InvariantCulture)) : $"{ctx.Request.Path} {body.Length}");
    });

    private static Task<ForwarderHarness> ProxyAsync(KestrelUpstream upstream, Http2ServerOptions? options = null) =>
        ForwarderHarness.StartAsync(Http1Routing.ForService(Http1ForwarderTests.ServiceOf("web", upstream.EndPoint)), http2: true, http2Options: options);

    [Fact]
    public async Task Preface_Wrong_GoAwayProtocolErrorAndClose()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint, handshake: false);

        await h2.SendRawAsync("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"u8.ToArray());
        var frames = await h2.ReadToEndAsync();

        var goAway = Assert.Single(frames, f => f.Type == H2Frame.GoAway);
        Assert.Equal(ProtocolError, goAway.ErrorCode);
    }

    [Fact]
    public async Task Handshake_ServerSettingsFirstAndClientSettingsAcked()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxConcurrentStreams = 7 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        var first = await h2.ReadFrameAsync();
        var (ack, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.Settings && (f.Flags & 1) != 0);

        Assert.Equal(H2Frame.Settings, first!.Type);
        Assert.Equal(0, first.Flags);
        Assert.Contains(Settings(first.Payload), s => s.Id == 3 && s.Value == 7);
        Assert.Empty(ack.Payload);
    }

    [Fact]
    public async Task Ping_AnsweredWithAckAndSamePayload()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);
        byte[] data = [1, 2, 3, 4, 5, 6, 7, 8];

        await h2.SendFrameAsync(H2Frame.Ping, 0, 0, data);
        var (pong, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.Ping);

        Assert.Equal(1, pong.Flags);
        Assert.Equal(data, pong.Payload);
    }

    public static TheoryData<string, string> MalformedFields => new()
    {
        { "Uppercase", "x" },
        { "connection", "close" },
        { "transfer-encoding", "chunked" },
        { "te", "gzip" },
        { "x-bad", "a\nb" },
    };

    [Theory]
    [MemberData(nameof(MalformedFields))]
    public async Task Headers_Malformed_StreamResetProtocolErrorAndConnectionLives(string name, string value)
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/bad", (name, value));
        var (reset, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);
        await h2.SendGetAsync(3, "/good");
        var response = await h2.ReadResponseAsync(3);

        Assert.Equal(1u, reset.StreamId);
        Assert.Equal(ProtocolError, reset.ErrorCode);
        Assert.Equal(200, response.Status);
        Assert.Equal("/good 0", response.BodyText);
    }

    [Fact]
    public async Task Headers_MissingPath_StreamResetProtocolError()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendHeadersAsync(1, true, (":method", "GET"), (":scheme", "http"), (":authority", "a"));
        var (reset, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);

        Assert.Equal(ProtocolError, reset.ErrorCode);
    }

    [Fact]
    public async Task Headers_EvenStreamId_ConnectionErrorProtocolError()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(2, "/");
        var frames = await h2.ReadToEndAsync();

        Assert.Equal(ProtocolError, Assert.Single(frames, f => f.Type == H2Frame.GoAway).ErrorCode);
    }

    [Fact]
    public async Task Data_OnIdleStream_ConnectionErrorProtocolError()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendDataAsync(5, [1, 2, 3], endStream: true);
        var frames = await h2.ReadToEndAsync();

        Assert.Equal(ProtocolError, Assert.Single(frames, f => f.Type == H2Frame.GoAway).ErrorCode);
    }

    [Fact]
    public async Task Data_BeyondStreamWindow_StreamResetFlowControlError()
    {
        // The pool never hands out a connection, so the forwarder never consumes the body and no window comes back.
        using var pool = new StalledPool();
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(new Proxy.Core.Addresses.UpstreamAddress(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 9))), pool: pool, http2: true, http2Options: new Http2ServerOptions { InitialStreamWindowSize = 65535 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/up"));
        for (var i = 0; i < 4; i++)
        {
            await h2.SendDataAsync(1, new byte[16384], endStream: false);
        }

        var (reset, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);

        Assert.Equal(1u, reset.StreamId);
        Assert.Equal(FlowControlError, reset.ErrorCode);
    }

    [Fact]
    public async Task Data_LongerThanContentLength_StreamResetProtocolError()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/up"), ("content-length", "3"));
        await h2.SendDataAsync(1, [1, 2, 3, 4], endStream: true);
        var (reset, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);

        Assert.Equal(ProtocolError, reset.ErrorCode);
    }

    [Fact]
    public async Task Frame_LargerThanMaxFrameSize_ConnectionErrorFrameSize()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendHeadersAsync(1, false, (":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/up"));
        await h2.SendDataAsync(1, new byte[16385], endStream: true);
        var frames = await h2.ReadToEndAsync();

        Assert.Equal(FrameSizeError, Assert.Single(frames, f => f.Type == H2Frame.GoAway).ErrorCode);
    }

    [Fact]
    public async Task Streams_PastMaxConcurrent_RefusedAndOthersServed()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await UpstreamAsync(release);
        await using var proxy = await ProxyAsync(upstream, new Http2ServerOptions { MaxConcurrentStreams = 1 });
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/hold");
        await h2.SendGetAsync(3, "/other");
        var (refused, _) = await h2.ReadUntilAsync(f => f.Type == H2Frame.RstStream);
        release.SetResult();
        var held = await h2.ReadResponseAsync(1);

        Assert.Equal(3u, refused.StreamId);
        Assert.Equal(RefusedStream, refused.ErrorCode);
        Assert.Equal("/hold 0", held.BodyText);
    }

    [Fact]
    public async Task Response_ClientWindowSmall_ServerNeverExceedsItAndFinishesAfterUpdates()
    {
        await using var upstream = await UpstreamAsync();
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint, handshake: false);
        await h2.SendRawAsync(H2TestConnection.Preface);
        var settings = new byte[6];
        BinaryPrimitives.WriteUInt16BigEndian(settings, 0x4);
        BinaryPrimitives.WriteUInt32BigEndian(settings.AsSpan(2), 1000);
        await h2.SendFrameAsync(H2Frame.Settings, 0, 0, settings);

        await h2.SendGetAsync(1, "/big?size=5000");
        var received = 0;
        var (_, seen) = await h2.ReadUntilAsync(f => f.Type == H2Frame.Data);
        received += seen.Where(f => f.Type == H2Frame.Data).Sum(f => f.Payload.Length);
        Assert.Equal(1000, received);

        // Nothing more comes until the window opens: grant 4000 more on the stream and count what follows.
        var grant = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(grant, 4000);
        await h2.SendFrameAsync(H2Frame.WindowUpdate, 0, 1, grant);
        H2Frame frame;
        do
        {
            frame = (await h2.ReadFrameAsync())!;
            if (frame.Type == H2Frame.Data && frame.StreamId == 1)
            {
                received += frame.Payload.Length;
            }
        }
        while (!(frame.Type == H2Frame.Data && frame.EndStream));

        Assert.Equal(5000, received);
    }

    [Fact]
    public async Task RstStream_FromClient_OtherStreamsUnaffected()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await UpstreamAsync(release);
        await using var proxy = await ProxyAsync(upstream);
        await using var h2 = await H2TestConnection.ConnectAsync(proxy.EndPoint);

        await h2.SendGetAsync(1, "/hold");
        await h2.SendGetAsync(3, "/quick");
        var quick = await h2.ReadResponseAsync(3);
        await h2.SendFrameAsync(H2Frame.RstStream, 0, 1, [0, 0, 0, 8]);
        release.SetResult();
        await h2.SendGetAsync(5, "/after");
        var after = await h2.ReadResponseAsync(5);

        Assert.Equal("/quick 0", quick.BodyText);
        Assert.Equal("/after 0", after.BodyText);
    }

    private static List<(int Id, uint Value)> Settings(byte[] payload)
    {
        var list = new List<(int, uint)>();
        for (var i = 0; i + 6 <= payload.Length; i += 6)
        {
            list.Add((BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 2))));
        }

        return list;
    }

    private sealed class StalledPool : Proxy.Core.Upstream.IUpstreamPool, IDisposable
    {
        private readonly CancellationTokenSource _stop = new();

        public async ValueTask<Proxy.Core.Upstream.PoolRentResult> RentAsync(Proxy.Core.Addresses.UpstreamAddress address, CancellationToken cancellationToken)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
            await Task.Delay(Timeout.Infinite, linked.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw new OperationCanceledException();
        }

        public void Return(Proxy.Core.Upstream.PooledConnection connection, bool reusable)
        {
        }

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
        }
    }
}

using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;
using Proxy.Http.Tests.Forwarding;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>The client connection against a real HTTP/2 server (Kestrel, h2c with prior knowledge).</summary>
public sealed class Http2ClientConnectionTests
{
    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < length; i++)
        {
            bytes[i] = (byte)((i * 31) + (i >> 10));
        }

        return bytes;
    }

    [Fact]
    public async Task Get_KestrelH2c_ReturnsStatusFieldsAndBody()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            context.Response.Headers["x-path"] = context.Request.Path.Value + "|" + context.Request.Method + "|" + context.Request.Protocol;
            await context.Response.WriteAsync("hello h2");
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        var response = await ClientExchange.SendAsync(connection, "GET", "/a/b?c=d");

        Assert.Equal(200, response.Status);
        Assert.Contains(("x-path", "/a/b|GET|HTTP/2"), response.Fields);
        Assert.Equal("hello h2", Encoding.ASCII.GetString(response.Body));
        Assert.Equal(Http2StreamEndKind.Completed, response.End.Kind);
        Assert.Null(response.Trailers);
        Assert.Equal(0, connection.ActiveStreams);
    }

    [Fact]
    public async Task Streams_DisposedStreamObject_ReusedForALaterStreamAndNotReachableThroughTheOldOne()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            await context.Response.WriteAsync("path " + context.Request.Path.Value);
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        // A: a whole exchange, then disposed by its owner.
        Assert.True(connection.TryOpenStream(out var a));
        var aCompletion = a.Completion;
        using (var head = ClientExchange.Request("GET", "/a"))
        {
            Assert.True(await a.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
        }

        var aResponse = await ClientExchange.ReadResponseAsync(a);
        var aId = a.Id;
        a.Dispose();

        // B: its response frames pass through the frame loop, which recycles A between frames.
        var b = await ClientExchange.SendAsync(connection, "GET", "/b");
        Assert.Equal("path /b", Encoding.ASCII.GetString(b.Body));

        // C gets A's object, made new: its own id, completion, body and end.
        Assert.True(connection.TryOpenStream(out var c));
        Assert.Same(a, c);
        Assert.Equal(0u, c.Id);
        Assert.NotSame(aCompletion, c.Completion);
        using (c)
        {
            using (var head = ClientExchange.Request("GET", "/c"))
            {
                Assert.True(await c.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
            }

            var cResponse = await ClientExchange.ReadResponseAsync(c);
            Assert.Equal(200, cResponse.Status);
            Assert.Equal("path /c", Encoding.ASCII.GetString(cResponse.Body));
            Assert.Equal(Http2StreamEndKind.Completed, cResponse.End.Kind);
            Assert.True(c.Id > aId);
        }

        // A's result, taken before the reuse, is untouched.
        Assert.Equal("path /a", Encoding.ASCII.GetString(aResponse.Body));
        Assert.Equal(Http2StreamEndKind.Completed, (await aCompletion.WaitAsync(Timeouts.Short)).Kind);
        Assert.Equal(0, connection.ActiveStreams);
    }

    [Fact]
    public async Task Streams_NotDisposed_NeverReused()
    {
        await using var server = await KestrelH2Upstream.StartAsync(context => context.Response.WriteAsync("ok"));
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        Assert.True(connection.TryOpenStream(out var kept));
        using (var head = ClientExchange.Request("GET", "/kept"))
        {
            Assert.True(await kept.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
        }

        var keptResponse = await ClientExchange.ReadResponseAsync(kept);
        for (var i = 0; i < 3; i++)
        {
            await ClientExchange.SendAsync(connection, "GET", "/other");
        }

        Assert.True(connection.TryOpenStream(out var next));
        Assert.NotSame(kept, next);
        next.Dispose();
        Assert.Equal("ok", Encoding.ASCII.GetString(keptResponse.Body));
        kept.Dispose();
    }

    [Fact]
    public async Task Post_SeveralMegabytesBothWays_EchoedByteExact()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            // Streamed both ways: the upload and the download are in flight together.
            await context.Request.Body.CopyToAsync(context.Response.Body);
        });
        // Small windows on our side so the server's sending waits for our WINDOW_UPDATEs many times.
        var options = new Http2ClientOptions { InitialStreamWindowSize = 64 * 1024, InitialConnectionWindowSize = 128 * 1024 };
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint, options);
        using var _ = transport;
        await using var __ = connection;
        var body = Pattern(6 * 1024 * 1024 + 123);

        var response = await ClientExchange.SendAsync(connection, "POST", "/echo", body, chunk: 100_000);

        Assert.Equal(200, response.Status);
        Assert.Equal(body.Length, response.Body.Length);
        Assert.True(body.AsSpan().SequenceEqual(response.Body));
        Assert.True(response.End.IsCompleted);
    }

    [Fact]
    public async Task Post_DownloadLargerThanWindows_ArrivesByteExact()
    {
        var payload = Pattern(3 * 1024 * 1024);
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            var received = new MemoryStream();
            await context.Request.Body.CopyToAsync(received);
            context.Response.Headers["x-received"] = received.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await context.Response.Body.WriteAsync(payload);
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        var response = await ClientExchange.SendAsync(connection, "POST", "/up", Pattern(2 * 1024 * 1024), chunk: 1 << 20);

        Assert.Contains(("x-received", (2 * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture)), response.Fields);
        Assert.True(payload.AsSpan().SequenceEqual(response.Body));
    }

    [Fact]
    public async Task Streams_FiftyConcurrentOnOneConnection_AllComplete()
    {
        var inFlight = 0;
        var peak = 0;
        var allIn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            var now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref peak, now);
            if (now == 50)
            {
                allIn.TrySetResult();
            }

            // Every response waits until all 50 are in flight: they really overlap on the connection.
            await allIn.Task.WaitAsync(Timeouts.Short);
            var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            await context.Response.WriteAsync(context.Request.Path.Value + ":" + body.Length);
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        var tasks = Enumerable.Range(0, 50).Select(i => ClientExchange.SendAsync(connection, "POST", "/s" + i, Pattern(1000 * i + 1))).ToArray();
        var responses = await Task.WhenAll(tasks).WaitAsync(Timeouts.Bulk);

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal("/s" + i + ":" + (1000 * i + 1), Encoding.ASCII.GetString(responses[i].Body));
        }

        Assert.Equal(50, peak);
        Assert.Equal(0, connection.ActiveStreams);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    [Fact]
    public async Task Trailers_FromKestrel_ReceivedAfterBody()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            // Read the request first, as a gRPC server does: a handler that answers before the request body arrived
            // ends the exchange and Kestrel resets the stream, racing the client's body write (it failed a CI run).
            await context.Request.Body.CopyToAsync(Stream.Null);
            context.Response.DeclareTrailer("grpc-status");
            await context.Response.WriteAsync("payload");
            context.Response.AppendTrailer("grpc-status", "0");
            context.Response.AppendTrailer("grpc-message", "fine");
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;

        var response = await ClientExchange.SendAsync(connection, "POST", "/svc/Method", Encoding.ASCII.GetBytes("req"), extra: [("te", "trailers"), ("content-type", "application/grpc")]);

        Assert.Equal("payload", Encoding.ASCII.GetString(response.Body));
        Assert.NotNull(response.Trailers);
        Assert.Contains(("grpc-status", "0"), response.Trailers);
        Assert.Contains(("grpc-message", "fine"), response.Trailers);
        Assert.True(response.End.IsCompleted);
    }

    [Fact]
    public async Task RequestTrailers_SentAfterBody_SeenByKestrel()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            await context.Response.WriteAsync(body.Length + ":" + context.Request.GetTrailer("x-checksum"));
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;
        Assert.True(connection.TryOpenStream(out var stream));
        using var head = ClientExchange.Request("POST", "/t");
        using var trailers = ClientExchange.Fields(("x-checksum", "abc"));

        Assert.True(await stream.WriteHeadersAsync(head, endStream: false).AsTask().WaitAsync(Timeouts.Short));
        Assert.True(await stream.WriteDataAsync(new System.Buffers.ReadOnlySequence<byte>(Pattern(5000)), endStream: false).AsTask().WaitAsync(Timeouts.Short));
        Assert.True(await stream.WriteTrailersAsync(trailers).AsTask().WaitAsync(Timeouts.Short));
        var response = await ClientExchange.ReadResponseAsync(stream);
        stream.Dispose();

        Assert.Equal("5000:abc", Encoding.ASCII.GetString(response.Body));
    }

    [Fact]
    public async Task TryOpenStream_AtServersMaxConcurrentStreams_ReturnsFalseUntilOneEnds()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = 0;
        var twoIn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await KestrelH2Upstream.StartAsync(
            async context =>
            {
                if (context.Request.Path == "/hold")
                {
                    if (Interlocked.Increment(ref entered) == 2)
                    {
                        twoIn.TrySetResult();
                    }

                    await release.Task.WaitAsync(Timeouts.Short);
                }

                await context.Response.WriteAsync("ok");
            },
            maxStreamsPerConnection: 2);
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;
        // One exchange first: the server's SETTINGS precede its response, so they are applied by now.
        await ClientExchange.SendAsync(connection, "GET", "/warm");
        Assert.Equal(2, connection.MaxConcurrentStreams);

        var first = ClientExchange.SendAsync(connection, "GET", "/hold");
        var second = ClientExchange.SendAsync(connection, "GET", "/hold");
        await twoIn.Task.WaitAsync(Timeouts.Short);

        Assert.False(connection.CanOpenStream);
        Assert.False(connection.TryOpenStream(out var none));
        Assert.Equal(2, connection.ActiveStreams);

        release.SetResult();
        await Task.WhenAll(first, second).WaitAsync(Timeouts.Short);
        Assert.True(connection.CanOpenStream);
        Assert.Equal("ok", Encoding.ASCII.GetString((await ClientExchange.SendAsync(connection, "GET", "/after")).Body));
    }

    [Fact]
    public async Task ServerReset_KestrelResetFeature_SeenAsResetWithCode()
    {
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            await context.Response.WriteAsync("partial");
            if (context.Request.Path == "/reset")
            {
                await context.Response.Body.FlushAsync();
                context.Features.Get<IHttpResetFeature>()!.Reset((int)Http2ErrorCode.Cancel);
            }
        });
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;
        Assert.True(connection.TryOpenStream(out var stream));
        using var head = ClientExchange.Request("GET", "/reset");

        await stream.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short);
        var end = await stream.Completion.WaitAsync(Timeouts.Short);
        var body = await Assert.ThrowsAsync<Http2StreamAbortedException>(async () =>
        {
            while (true)
            {
                var result = await stream.ResponseBody.ReadAsync().AsTask().WaitAsync(Timeouts.Short);
                stream.ResponseBody.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        });
        stream.Dispose();

        Assert.Equal(Http2StreamEndKind.ResetByPeer, end.Kind);
        Assert.Equal(Http2ErrorCode.Cancel, end.ErrorCode);
        Assert.False(end.IsRetryable);
        Assert.Equal(end, body.End);
        // The connection lives on.
        Assert.Equal(200, (await ClientExchange.SendAsync(connection, "GET", "/next")).Status);
    }

    [Fact]
    public async Task ServerShutdown_GoAway_InFlightFinishesAndNewStreamsRefused()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            entered.TrySetResult();
            await release.Task.WaitAsync(Timeouts.Short);
            await context.Response.WriteAsync("finished");
        });
        await using var ___ = server;
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint);
        using var _ = transport;
        await using var __ = connection;
        Assert.True(connection.TryOpenStream(out var unsent));

        var inFlight = ClientExchange.SendAsync(connection, "GET", "/slow");
        await entered.Task.WaitAsync(Timeouts.Short);
        var stop = server.StopAsync();
        await connection.GoingAway.WaitAsync(Timeouts.Short);

        Assert.True(connection.IsGoingAway);
        Assert.False(connection.TryOpenStream(out var none));
        // A stream reserved before the GOAWAY but not yet sent is refused, retryable.
        using var head = ClientExchange.Request("GET", "/late");
        Assert.False(await unsent.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
        var unsentEnd = await unsent.Completion.WaitAsync(Timeouts.Short);
        Assert.Equal(Http2StreamEndKind.Refused, unsentEnd.Kind);
        Assert.True(unsentEnd.IsRetryable);
        unsent.Dispose();

        release.SetResult();
        var response = await inFlight.WaitAsync(Timeouts.Short);
        Assert.Equal("finished", Encoding.ASCII.GetString(response.Body));
        Assert.True(response.End.IsCompleted);
        await stop.WaitAsync(Timeouts.Short);
        await connection.Closed.WaitAsync(Timeouts.Short);
    }

    [Fact]
    public async Task Streams_HalfResetMidDownload_OthersCompleteAndConnectionWindowNotLeaked()
    {
        var payload = Pattern(512 * 1024);
        await using var server = await KestrelH2Upstream.StartAsync(async context =>
        {
            try
            {
                await context.Response.Body.WriteAsync(payload, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                // The client reset this stream.
            }
        });
        // Connection window smaller than the total: bytes of reset streams must be credited back or the rest stall.
        var options = new Http2ClientOptions { InitialStreamWindowSize = 128 * 1024, InitialConnectionWindowSize = 256 * 1024 };
        var (connection, transport) = await ClientTransport.ConnectAsync(server.EndPoint, options);
        using var _ = transport;
        await using var __ = connection;

        async Task<int> RunAsync(int i)
        {
            Assert.True(connection.TryOpenStream(out var stream));
            using (stream)
            {
                using var head = ClientExchange.Request("GET", "/d" + i);
                Assert.True(await stream.WriteHeadersAsync(head, endStream: true).AsTask().WaitAsync(Timeouts.Short));
                using var response = await stream.ReadResponseHeadAsync().AsTask().WaitAsync(Timeouts.Short);
                if (i % 2 == 1)
                {
                    // Read a little, then give up on the rest.
                    var first = await stream.ResponseBody.ReadAsync().AsTask().WaitAsync(Timeouts.Short);
                    stream.ResponseBody.AdvanceTo(first.Buffer.End);
                    stream.Reset(Http2ErrorCode.Cancel);
                    var end = await stream.Completion.WaitAsync(Timeouts.Short);
                    Assert.Equal(Http2StreamEndKind.ResetLocally, end.Kind);
                    return -1;
                }

                var total = 0;
                while (true)
                {
                    var result = await stream.ResponseBody.ReadAsync().AsTask().WaitAsync(Timeouts.Bulk);
                    total += (int)result.Buffer.Length;
                    stream.ResponseBody.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        return total;
                    }
                }
            }
        }

        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(RunAsync)).WaitAsync(Timeouts.Bulk);

        Assert.All(results.Where((_, i) => i % 2 == 0), r => Assert.Equal(payload.Length, r));
        // Several more full windows' worth on the same connection: nothing leaked.
        for (var i = 0; i < 3; i++)
        {
            var response = await ClientExchange.SendAsync(connection, "GET", "/after" + i);
            Assert.True(payload.AsSpan().SequenceEqual(response.Body));
        }

        Assert.Equal(0, connection.ActiveStreams);
    }
}

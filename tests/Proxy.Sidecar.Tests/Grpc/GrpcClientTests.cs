using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Proxy.Sidecar.Tests.Grpc.Echo;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// Grpc.Net.Client against a Grpc.AspNetCore service, every call kind over every <see cref="GrpcPath"/>: what arrives
/// through the sidecar must be what arrives directly (payloads byte-exact, metadata, trailers, status, deadlines,
/// cancellation). Proxy-made failures are in <see cref="GrpcProxyFailureTests"/>.
/// </summary>
public sealed class GrpcClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _disposables = [];
    private GrpcTestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await GrpcTestServer.StartAsync();
        _disposables.Add(_server);
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private async Task<Echo.Echo.EchoClient> ClientAsync(GrpcPath path)
    {
        var setup = await GrpcPathSetup.StartAsync(path, _server.EndPoint);
        _disposables.Add(setup);
        var channel = setup.Channel();
        _disposables.Add(new DisposeAction(channel.Dispose));
        return new Echo.Echo.EchoClient(channel);
    }

    private static ByteString RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return ByteString.CopyFrom(bytes);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task Unary_PayloadAndRequestMetadata_EchoedBack(GrpcPath path)
    {
        var client = await ClientAsync(path);
        var headers = new Metadata { { "x-tenant", "acme" }, { "x-trace", "t-1" } };
        var reply = await client.UnaryAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8("hello"), Text = "grüße ✓" }, headers).ResponseAsync.WaitAsync(Timeout);

        Assert.Equal("hello", reply.Payload.ToStringUtf8());
        Assert.Equal("grüße ✓", reply.Text);
        Assert.Equal("acme", reply.RequestHeaders["x-tenant"]);
        Assert.Equal("t-1", reply.RequestHeaders["x-trace"]);

        // A second call on the same channel (one HTTP/2 connection, a new stream).
        var again = await client.UnaryAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8("again") }).ResponseAsync.WaitAsync(Timeout);
        Assert.Equal("again", again.Payload.ToStringUtf8());
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task Unary_TwentyConcurrentCalls_EachGetsItsOwnReply(GrpcPath path)
    {
        // Concurrent streams on one client connection (and, through the sidecar, multiplexed upstream): no reply may
        // reach the wrong call. Staggered delays make the replies come back out of order.
        var client = await ClientAsync(path);
        var calls = Enumerable.Range(0, 20)
            .Select(i => client.UnaryAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8($"call {i}"), DelayMs = (20 - i) * 10 }).ResponseAsync)
            .ToArray();
        var replies = await Task.WhenAll(calls).WaitAsync(Timeout);
        for (var i = 0; i < replies.Length; i++)
        {
            Assert.Equal($"call {i}", replies[i].Payload.ToStringUtf8());
        }
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ServerStream_HundredReplies_AllInOrderThenOk(GrpcPath path)
    {
        var client = await ClientAsync(path);
        using var call = client.ServerStream(new EchoRequest { Payload = ByteString.CopyFromUtf8("s"), Count = 100 });
        var indexes = new List<int>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout))
        {
            Assert.Equal("s", call.ResponseStream.Current.Payload.ToStringUtf8());
            indexes.Add(call.ResponseStream.Current.Index);
        }

        Assert.Equal(Enumerable.Range(0, 100), indexes);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ClientStream_FiftyRequests_AllArriveInOrder(GrpcPath path)
    {
        var client = await ClientAsync(path);
        using var call = client.ClientStream();
        var expected = new StringBuilder();
        for (var i = 0; i < 50; i++)
        {
            var piece = $"[{i}]";
            expected.Append(piece);
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8(piece) }).WaitAsync(Timeout);
        }

        await call.RequestStream.CompleteAsync().WaitAsync(Timeout);
        var reply = await call.ResponseAsync.WaitAsync(Timeout);

        Assert.Equal(50, reply.Received);
        Assert.Equal(expected.ToString(), reply.Payload.ToStringUtf8());
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task Bidi_PingPong_EachReplyBeforeTheNextRequest(GrpcPath path)
    {
        var client = await ClientAsync(path);
        using var call = client.Bidi();
        for (var i = 0; i < 20; i++)
        {
            // The next request is written only after the reply to this one arrived: the proxy must forward each
            // message as it comes (no buffering until end of stream) in both directions.
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8($"ping {i}") }).WaitAsync(Timeout);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
            Assert.Equal($"ping {i}", call.ResponseStream.Current.Payload.ToStringUtf8());
            Assert.Equal(i, call.ResponseStream.Current.Index);
        }

        await call.RequestStream.CompleteAsync().WaitAsync(Timeout);
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task LargeMessages_OneToFourMegabytes_ByteExactBothWays(GrpcPath path)
    {
        var client = await ClientAsync(path);
        foreach (var size in new[] { 1024 * 1024, (4 * 1024 * 1024) - 17 })
        {
            var payload = RandomBytes(size, seed: size);
            var reply = await client.UnaryAsync(new EchoRequest { Payload = payload }).ResponseAsync.WaitAsync(Timeout);
            Assert.True(payload.Span.SequenceEqual(reply.Payload.Span), $"{size}-byte payload came back changed");
        }

        // Large messages on a bidi stream: 3 MB each way, twice.
        using var call = client.Bidi();
        for (var i = 0; i < 2; i++)
        {
            var payload = RandomBytes(3 * 1024 * 1024, seed: i);
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = payload }).WaitAsync(Timeout);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
            Assert.True(payload.Span.SequenceEqual(call.ResponseStream.Current.Payload.Span));
        }

        await call.RequestStream.CompleteAsync().WaitAsync(Timeout);
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task Metadata_ResponseHeadersAndTrailers_Arrive(GrpcPath path)
    {
        var client = await ClientAsync(path);
        var request = new EchoRequest { Payload = ByteString.CopyFromUtf8("m"), Count = 3 };
        request.ResponseHeaders.Add("x-head", "early");
        request.ResponseTrailers.Add("x-tail", "late");

        using var unary = client.UnaryAsync(request);
        var headers = await unary.ResponseHeadersAsync.WaitAsync(Timeout);
        await unary.ResponseAsync.WaitAsync(Timeout);
        Assert.Equal("early", headers.GetValue("x-head"));
        Assert.Equal("late", unary.GetTrailers().GetValue("x-tail"));
        Assert.Null(unary.GetTrailers().GetValue("x-head"));

        // Server streaming: headers before the first message, trailers after the last.
        using var stream = client.ServerStream(request);
        Assert.Equal("early", (await stream.ResponseHeadersAsync.WaitAsync(Timeout)).GetValue("x-head"));
        var count = 0;
        while (await stream.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout))
        {
            count++;
        }

        Assert.Equal(3, count);
        Assert.Equal("late", stream.GetTrailers().GetValue("x-tail"));
        Assert.Equal(StatusCode.OK, stream.GetStatus().StatusCode);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ServerError_StatusAndNonAsciiMessage_Preserved(GrpcPath path)
    {
        var client = await ClientAsync(path);
        // Non-ASCII and '%' travel percent-encoded in grpc-message; the proxy must pass the encoded form unchanged.
        const string message = "nicht gefunden: Größe 100% – ✓ 日本";
        var failing = new EchoRequest { Count = 2, FailCode = (int)StatusCode.NotFound, FailMessage = message };
        failing.ResponseTrailers.Add("x-tail", "on-error");

        // Unary: no message, status in the trailers (a trailers-only response from Grpc.AspNetCore).
        using var unary = client.UnaryAsync(failing);
        var e = await Assert.ThrowsAsync<RpcException>(() => unary.ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal(message, e.Status.Detail);
        Assert.Equal("on-error", e.Trailers.GetValue("x-tail"));

        // Server streaming: two messages, then the error status in trailers after the DATA frames.
        using var stream = client.ServerStream(failing);
        var received = 0;
        var streamed = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await stream.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout))
            {
                received++;
            }
        });
        Assert.Equal(2, received);
        Assert.Equal(StatusCode.NotFound, streamed.StatusCode);
        Assert.Equal(message, streamed.Status.Detail);

        // Another code, plain ASCII, from a client stream.
        using var clientStream = client.ClientStream();
        await clientStream.RequestStream.WriteAsync(new EchoRequest { FailCode = (int)StatusCode.PermissionDenied, FailMessage = "no" }).WaitAsync(Timeout);
        await clientStream.RequestStream.CompleteAsync().WaitAsync(Timeout);
        var denied = await Assert.ThrowsAsync<RpcException>(() => clientStream.ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Equal("no", denied.Status.Detail);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task Deadline_ServerSlowerThanGrpcTimeout_DeadlineExceeded(GrpcPath path)
    {
        var client = await ClientAsync(path);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var call = client.UnaryAsync(new EchoRequest { DelayMs = 20_000 }, deadline: DateTime.UtcNow.AddMilliseconds(500));
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Timeout));

        // From the client's own timer, the proxy (grpc-timeout bounds its wait for the response head) or the server.
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");

        // The channel (and the proxy's connections) still serve the next call.
        var reply = await client.UnaryAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8("after") }).ResponseAsync.WaitAsync(Timeout);
        Assert.Equal("after", reply.Payload.ToStringUtf8());
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ClientCancellation_Unary_ServerSeesCallCancelled(GrpcPath path)
    {
        // The client's RST_STREAM(CANCEL) must reach the server as a reset of the upstream stream (or a closed
        // upstream connection), which fires ServerCallContext.CancellationToken there.
        var client = await ClientAsync(path);
        var id = Guid.NewGuid().ToString("N");
        var record = _server.Calls.Get(id);
        using var cts = new CancellationTokenSource();
        using var call = client.UnaryAsync(new EchoRequest { DelayMs = 60_000 }, new Metadata { { "x-call-id", id } }, cancellationToken: cts.Token);

        // Should the call fail before reaching the server, fail with its error rather than wait out the timeout.
        await Task.WhenAny(record.Started.Task, call.ResponseAsync).WaitAsync(Timeout);
        Assert.False(call.ResponseAsync.IsCompleted, $"the call ended before the server saw it: {call.ResponseAsync.Exception?.InnerException?.Message}");
        await cts.CancelAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        await record.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(record.Completed.Task.IsCompleted);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ClientCancellation_BidiMidStream_ServerSeesCallCancelled(GrpcPath path)
    {
        var client = await ClientAsync(path);
        var id = Guid.NewGuid().ToString("N");
        var record = _server.Calls.Get(id);
        using var cts = new CancellationTokenSource();
        using var call = client.Bidi(new Metadata { { "x-call-id", id } }, cancellationToken: cts.Token);

        // One exchange first, so the upstream stream is established and carrying DATA both ways.
        await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8("one") }).WaitAsync(Timeout);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
        await record.Started.Task.WaitAsync(Timeout);

        await cts.CancelAsync();
        await record.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(record.Completed.Task.IsCompleted);
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    [InlineData(GrpcPath.CapturedPassthrough)]
    [InlineData(GrpcPath.Inbound)]
    [InlineData(GrpcPath.Mesh)]
    public async Task ClientCancellation_ServerStreamMidStream_ServerSeesCallCancelled(GrpcPath path)
    {
        // The request is complete and replies are flowing (one every 50 ms, for a minute) when the client cancels.
        var client = await ClientAsync(path);
        var id = Guid.NewGuid().ToString("N");
        var record = _server.Calls.Get(id);
        using var cts = new CancellationTokenSource();
        using var call = client.ServerStream(new EchoRequest { Count = 1200, IntervalMs = 50 }, new Metadata { { "x-call-id", id } }, cancellationToken: cts.Token);

        for (var i = 0; i < 2; i++)
        {
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(Timeout));
        }

        await cts.CancelAsync();
        await record.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(record.Completed.Task.IsCompleted);
    }

    /// <summary>Adapts a synchronous dispose to the test's disposal list.</summary>
    private sealed class DisposeAction(Action dispose) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            dispose();
            return ValueTask.CompletedTask;
        }
    }
}

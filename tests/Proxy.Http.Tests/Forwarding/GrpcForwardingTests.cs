using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Addresses;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>gRPC calls through the HTTP/1.1 forwarder: failures in gRPC form, grpc-timeout as a deadline, TE: trailers.</summary>
public sealed class GrpcForwardingTests
{
    private static string GrpcCall(string extraHeaders = "") =>
        "POST /echo.Echo/Unary HTTP/1.1\r\nHost: a\r\ncontent-type: application/grpc\r\nTE: trailers\r\n" + extraHeaders + "Content-Length: 0\r\n\r\n";

    private static IPEndPoint UnusedEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }

    private static async Task<(RawResponse Response, RecordedRequest Record)> OneCallAsync(UpstreamAddress upstream, string extraHeaders = "", Http1ForwarderOptions? options = null)
    {
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream, "web"), options, listener: "outbound");
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);
        await client.SendAsync(GrpcCall(extraHeaders));
        var response = await client.Reader.ReadResponseAsync("POST");
        var record = (await proxy.Observer.WaitForAsync(1))[0];
        return (response, record);
    }

    [Fact]
    public async Task HandleAsync_GrpcCallUpstreamRefuses_TrailersOnlyUnavailable()
    {
        var unused = new UpstreamAddress(UnusedEndPoint());
        var (response, record) = await OneCallAsync(unused);

        Assert.Equal(200, response.Status);
        Assert.Equal("application/grpc", response.Header("content-type"));
        Assert.Equal("14", response.Header("grpc-status"));
        Assert.Equal($"upstream {unused} of service web refused the connection", Uri.UnescapeDataString(response.Header("grpc-message")!));
        Assert.Equal(ProxyErrors.UpstreamRefused, response.Header(ProxyErrors.HeaderName));
        Assert.Equal("0", response.Header("content-length"));
        Assert.Equal("", response.BodyText);
        Assert.Equal(ProxyErrors.UpstreamRefused, record.Error);
        Assert.True(record.ProxyMade);
    }

    [Fact]
    public async Task HandleAsync_GrpcTimeoutExpiresBeforeResponseHead_DeadlineExceeded()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new NetworkStream(socket, ownsSocket: false);
            await new RawHttpReader(stream).ReadHeadAsync();
            await release.Task;
        });
        try
        {
            // No response timeout configured: only the call's own deadline can end the wait.
            var options = new Http1ForwarderOptions { ResponseTimeout = Timeout.InfiniteTimeSpan };
            var (response, record) = await OneCallAsync(upstream.Address, "grpc-timeout: 200m\r\n", options);

            Assert.Equal(200, response.Status);
            Assert.Equal("4", response.Header("grpc-status"));
            Assert.Equal(ProxyErrors.DeadlineExceeded, response.Header(ProxyErrors.HeaderName));
            Assert.Contains("grpc-timeout of 200 ms", Uri.UnescapeDataString(response.Header("grpc-message")!), StringComparison.Ordinal);
            Assert.Equal(ProxyErrors.DeadlineExceeded, record.Error);
            Assert.True(record.Duration >= TimeSpan.FromMilliseconds(190), record.Duration.ToString());
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task HandleAsync_GrpcTimeoutExpiresWhileGettingAConnection_DeadlineExceededAndTheRentIsCancelled()
    {
        // A pool that cannot produce a connection (think an HTTP/2 handshake that never completes) until cancelled.
        var pool = new HangingPool();
        var upstream = new UpstreamAddress(UnusedEndPoint());
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream, "web"), listener: "outbound", pool: pool);
        using var client = await RawClient.ConnectAsync(proxy.EndPoint);

        await client.SendAsync(GrpcCall("grpc-timeout: 200m\r\n"));
        var response = await client.Reader.ReadResponseAsync("POST");
        var record = (await proxy.Observer.WaitForAsync(1))[0];

        Assert.Equal("4", response.Header("grpc-status"));
        Assert.Equal(ProxyErrors.DeadlineExceeded, response.Header(ProxyErrors.HeaderName));
        Assert.Equal($"upstream {upstream} of service web could not be reached (connect, pool wait or HTTP/2 handshake) within the call's grpc-timeout of 200 ms",
            Uri.UnescapeDataString(response.Header("grpc-message")!));
        Assert.True(record.Duration >= TimeSpan.FromMilliseconds(190), record.Duration.ToString());
        await pool.Cancelled.Task.WaitAsync(Timeouts.Short);

        // The session is sound: the next call on the connection (no deadline) goes to the pool again.
        await client.SendAsync(GrpcCall("grpc-timeout: 100m\r\n"));
        var second = await client.Reader.ReadResponseAsync("POST");
        Assert.Equal("4", second.Header("grpc-status"));
        Assert.Equal(2, pool.Rents);
    }

    private sealed class HangingPool : Proxy.Core.Upstream.IUpstreamPool
    {
        public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Rents;

        public async ValueTask<Proxy.Core.Upstream.PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Rents);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken).WaitAsync(Timeouts.Short, CancellationToken.None);
            }
            catch (OperationCanceledException)
            {
                Cancelled.TrySetResult();
                throw;
            }

            throw new InvalidOperationException("unreachable");
        }

        public void Return(Proxy.Core.Upstream.PooledConnection connection, bool reusable) => throw new InvalidOperationException("nothing was rented");
    }

    [Fact]
    public async Task HandleAsync_GrpcTimeoutShorterThanAScheduledResponseTimer_DeadlineStillFirst()
    {
        // The first (plain) request leaves the response timer scheduled for the long response timeout; the gRPC call
        // on the same connection must still end at its own, shorter deadline.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new NetworkStream(socket, ownsSocket: false);
            var reader = new RawHttpReader(stream);
            await reader.ReadHeadAsync();
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            await reader.ReadHeadAsync();
            await release.Task;
        });
        try
        {
            await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForAddress(upstream.Address, "web"),
                new Http1ForwarderOptions { ResponseTimeout = TimeSpan.FromMinutes(5) }, listener: "outbound");
            using var client = await RawClient.ConnectAsync(proxy.EndPoint);
            await client.SendAsync("GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(200, (await client.Reader.ReadResponseAsync()).Status);
            await client.SendAsync(GrpcCall("grpc-timeout: 300m\r\n"));
            var response = await client.Reader.ReadResponseAsync("POST");

            Assert.Equal("4", response.Header("grpc-status"));
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task HandleAsync_ClientSaysTeTrailers_UpstreamIsToldTooAndTrailersComeBack()
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var upstream = new RawUpstream(async (socket, _) =>
        {
            using var stream = new NetworkStream(socket, ownsSocket: false);
            seen.TrySetResult(await new RawHttpReader(stream).ReadHeadAsync() ?? "");
            await RawUpstreamHttp.SendAsync(socket, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\0\0\0\0\0\r\n0\r\ngrpc-status: 0\r\n\r\n");
        });
        var (response, record) = await OneCallAsync(upstream.Address);
        var head = await seen.Task.WaitAsync(Timeouts.Short);

        Assert.Contains("TE: trailers", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(200, response.Status);
        Assert.Null(record.Error);
    }

    [Theory]
    [InlineData("1S", 10_000_000L)]
    [InlineData("250m", 2_500_000L)]
    [InlineData("3M", 1_800_000_000L)]
    [InlineData("1H", 36_000_000_000L)]
    [InlineData("7u", 70L)]
    [InlineData("500n", 5L)]
    [InlineData("99999999S", 999_999_990_000_000L)]
    public void TryParseTimeout_ValidValues_Parsed(string value, long ticks)
    {
        Assert.True(GrpcSemantics.TryParseTimeout(Encoding.ASCII.GetBytes(value), out var timeout));
        Assert.Equal(ticks, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("10s")]
    [InlineData("-1S")]
    [InlineData("1 S")]
    [InlineData("123456789S")]
    public void TryParseTimeout_InvalidValues_Rejected(string value)
    {
        Assert.False(GrpcSemantics.TryParseTimeout(Encoding.ASCII.GetBytes(value), out _));
    }

    [Fact]
    public void TryParseTimeout_LargestHours_NoOverflow()
    {
        Assert.True(GrpcSemantics.TryParseTimeout("99999999H"u8, out var timeout));
        Assert.Equal(TimeSpan.FromHours(99_999_999), timeout);
    }

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("Application/GRPC;charset=utf-8", true)]
    [InlineData("application/grpc-web", false)]
    [InlineData("application/grpc-web+proto", false)]
    [InlineData("application/json", false)]
    public void IsGrpc_ContentTypes_Classified(string contentType, bool expected)
    {
        using var head = new Http1RequestHead();
        var parser = new Http1RequestHeadParser(Http1ParserOptions.Default);
        var bytes = new System.Buffers.ReadOnlySequence<byte>(Encoding.ASCII.GetBytes($"POST / HTTP/1.1\r\nHost: a\r\ncontent-type: {contentType}\r\n\r\n"));
        Assert.True(parser.TryParse(bytes, head, out _));
        Assert.Equal(expected, GrpcSemantics.IsGrpc(head.Headers));
    }

    [Fact]
    public void EncodeMessage_NonAsciiAndPercent_PercentEncoded()
    {
        Assert.Equal("caf%C3%A9 100%25 ok", Encoding.ASCII.GetString(GrpcSemantics.EncodeMessage("café 100% ok")));
    }

    [Theory]
    [InlineData(503, ProxyErrors.NoEndpoint, GrpcSemantics.Unavailable)]
    [InlineData(502, ProxyErrors.UpstreamReset, GrpcSemantics.Unavailable)]
    [InlineData(504, ProxyErrors.ResponseTimeout, GrpcSemantics.DeadlineExceeded)]
    [InlineData(504, ProxyErrors.DeadlineExceeded, GrpcSemantics.DeadlineExceeded)]
    [InlineData(504, ProxyErrors.RequestTimeout, GrpcSemantics.DeadlineExceeded)]
    [InlineData(504, ProxyErrors.PerTryTimeout, GrpcSemantics.DeadlineExceeded)]
    [InlineData(504, ProxyErrors.IdleTimeout, GrpcSemantics.DeadlineExceeded)]
    [InlineData(504, ProxyErrors.UpstreamConnectTimeout, GrpcSemantics.Unavailable)]
    [InlineData(503, ProxyErrors.FaultAbort, GrpcSemantics.Unavailable)]
    [InlineData(404, ProxyErrors.NoRoute, GrpcSemantics.Unimplemented)]
    [InlineData(400, ProxyErrors.BadRequest, GrpcSemantics.Internal)]
    public void StatusFor_ProxyFailures_MappedAsTheGrpcSpecSays(int http, string error, int grpc)
    {
        Assert.Equal(grpc, GrpcSemantics.StatusFor(http, error));
    }
}

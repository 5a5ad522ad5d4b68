using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Tests.Forwarding;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary>The pool's connection management against hand-driven HTTP/2 servers (<see cref="RawH2Server"/>) and Kestrel.</summary>
public sealed partial class Http2UpstreamPoolTests
{
    private const ushort MaxConcurrentStreams = 3;

    private static async Task<PooledConnection> RentOkAsync(Http2UpstreamPool pool, IPEndPoint endPoint)
    {
        var rent = await pool.RentAsync(new UpstreamAddress(endPoint), CancellationToken.None).AsTask().WaitAsync(Timeouts.Short);
        Assert.True(rent.IsSuccess, rent.IsSuccess ? "" : rent.Failure.ToString());
        return rent.Connection!;
    }

    private static async Task WriteAsync(PooledConnection connection, string text)
    {
        var output = connection.Connection.Transport.Output;
        output.Write(Encoding.ASCII.GetBytes(text));
        await output.FlushAsync().AsTask().WaitAsync(Timeouts.Short);
    }

    /// <summary>Reads the response bytes the exchange renders until <paramref name="until"/> appears.</summary>
    private static async Task<string> ReadUntilAsync(PipeReader input, string until)
    {
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(Timeouts.Short);
            var text = Encoding.ASCII.GetString(result.Buffer);
            if (text.Contains(until, StringComparison.Ordinal) || result.IsCompleted)
            {
                input.AdvanceTo(result.Buffer.End);
                return text;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static Task RespondAsync(RawH2Server server, uint streamId, string body) =>
        RespondCoreAsync(server, streamId, body);

    private static async Task RespondCoreAsync(RawH2Server server, uint streamId, string body)
    {
        await server.SendHeadersAsync(streamId, false, (":status", "200"), ("content-length", body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await server.SendAsync(H2Frame.Data, 0x1, streamId, Encoding.ASCII.GetBytes(body));
    }

    [Fact]
    public async Task Rent_ServerSendsPingFirst_FailsWithProtocolError()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);

        var renting = pool.RentAsync(new UpstreamAddress(server.EndPoint), CancellationToken.None).AsTask();
        await server.AcceptAsync();
        await server.SendAsync(H2Frame.Ping, 0, 0, new byte[8]);
        var rent = await renting.WaitAsync(Timeouts.Short);

        Assert.False(rent.IsSuccess);
        Assert.Equal(ConnectFailureCause.ProtocolError, rent.Failure.Cause);
        Assert.Equal("protocol_error", rent.Failure.CauseTag);
        Assert.Contains("does not speak HTTP/2", rent.Failure.Reason, StringComparison.Ordinal);
        Assert.Contains("not SETTINGS", rent.Failure.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rent_SilentServer_FailsWithProtocolErrorAfterHandshakeTimeout()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector, new Http2UpstreamPoolOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(200) });

        var renting = pool.RentAsync(new UpstreamAddress(server.EndPoint), CancellationToken.None).AsTask();
        await server.AcceptAsync();
        var rent = await renting.WaitAsync(Timeouts.Short);

        Assert.Equal(ConnectFailureCause.ProtocolError, rent.Failure.Cause);
        Assert.Contains("no SETTINGS frame", rent.Failure.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rent_NothingListens_FailsRefused()
    {
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var closed = new RawH2Server();
        var closedPort = closed.EndPoint;
        await closed.DisposeAsync();

        var rent = await pool.RentAsync(new UpstreamAddress(closedPort), CancellationToken.None).AsTask().WaitAsync(Timeouts.Short);

        Assert.False(rent.IsSuccess);
        Assert.Equal(ConnectFailureCause.Refused, rent.Failure.Cause);
    }

    [Fact]
    public async Task Rent_AllStreamsBusyAtConnectionLimit_WaitsThenPoolExhausted_AndAReturnFreesASlot()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        var options = new Http2UpstreamPoolOptions { MaxConnectionsPerEndpoint = 1, WaitTimeout = TimeSpan.FromMilliseconds(300) };
        await using var pool = new Http2UpstreamPool(connector, options);
        var renting = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync((MaxConcurrentStreams, 1));
        var first = await renting;
        // The server's SETTINGS (1 stream) is applied before the rent completes.

        var second = await pool.RentAsync(new UpstreamAddress(server.EndPoint), CancellationToken.None).AsTask().WaitAsync(Timeouts.Short);
        Assert.Equal(ConnectFailureCause.PoolExhausted, second.Failure.Cause);

        var third = pool.RentAsync(new UpstreamAddress(server.EndPoint), CancellationToken.None).AsTask();
        Assert.False(third.IsCompleted);
        pool.Return(first, reusable: false);
        var rent = await third.WaitAsync(Timeouts.Short);
        Assert.True(rent.IsSuccess, rent.IsSuccess ? "" : rent.Failure.ToString());
        Assert.True(rent.Connection!.IsReused);
        pool.Return(rent.Connection, reusable: false);
        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task Abort_MidBody_SendsRstStreamCancel()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var renting = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var rented = await renting;

        await WriteAsync(rented, "POST /up HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc");
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        var data = await server.ReadUntilAsync(H2Frame.Data);
        Assert.Equal(3, data.Payload.Length);
        rented.Connection.Abort();
        pool.Return(rented, reusable: false);
        var reset = await server.ReadUntilAsync(H2Frame.RstStream);

        Assert.Equal(headers.StreamId, reset.StreamId);
        Assert.Equal(0x8u, reset.ErrorCode);
    }

    [Fact]
    public async Task Return_BeforeTheResponse_SendsRstStreamCancel_AndTheConnectionCarriesOn()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var renting = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var rented = await renting;
        await WriteAsync(rented, "GET /slow HTTP/1.1\r\nHost: web\r\n\r\n");
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        pool.Return(rented, reusable: false);
        var reset = await server.ReadUntilAsync(H2Frame.RstStream);
        Assert.Equal(headers.StreamId, reset.StreamId);
        Assert.Equal(0x8u, reset.ErrorCode);

        var next = await RentOkAsync(pool, server.EndPoint);
        await WriteAsync(next, "GET /next HTTP/1.1\r\nHost: web\r\n\r\n");
        var nextHeaders = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, nextHeaders.StreamId, "fine");
        var text = await ReadUntilAsync(next.Connection.Transport.Input, "fine");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text, StringComparison.Ordinal);
        Assert.Contains("content-length: 4\r\n", text, StringComparison.Ordinal);
        pool.Return(next, reusable: true);
        Assert.Equal(1, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task IdleTimeout_ClosesAConnectionWithoutStreams()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        var address = new UpstreamAddress(server.EndPoint);
        await using var pool = new Http2UpstreamPool(connector, new Http2UpstreamPoolOptions { IdleTimeout = TimeSpan.FromMilliseconds(200) });
        var renting = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var rented = await renting;
        await WriteAsync(rented, "GET / HTTP/1.1\r\nHost: web\r\n\r\n");
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, headers.StreamId, "ok");
        await ReadUntilAsync(rented.Connection.Transport.Input, "\r\n\r\nok");
        pool.Return(rented, reusable: true);

        var goAway = await server.ReadUntilAsync(H2Frame.GoAway);

        Assert.Equal(0u, goAway.ErrorCode);
        Assert.Equal(0, pool.ConnectionCount(address));

        // The endpoint may have been forgotten by the sweep meanwhile: a new rent opens a new connection.
        var again = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var second = await again;
        await WriteAsync(second, "GET /again HTTP/1.1\r\nHost: web\r\n\r\n");
        var secondHeaders = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, secondHeaders.StreamId, "ok");
        Assert.Contains("\r\n\r\nok", await ReadUntilAsync(second.Connection.Transport.Input, "\r\n\r\nok"), StringComparison.Ordinal);
        pool.Return(second, reusable: true);
        Assert.Equal(2, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task ConnectRequest_Answered501UpstreamProtocol()
    {
        await using var upstream = await KestrelH2Upstream.StartAsync(ctx => ctx.Response.WriteAsync("never"));
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        var rented = await RentOkAsync(pool, upstream.EndPoint);

        await WriteAsync(rented, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        var text = await ReadUntilAsync(rented.Connection.Transport.Input, "\r\n\r\n");
        pool.Return(rented, reusable: false);

        Assert.StartsWith("HTTP/1.1 501 ", text, StringComparison.Ordinal);
        Assert.Contains("x-proxy-error: upstream_protocol", text, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task RefusedStream_IsRetriedOnAnotherStream()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var request = client.GetStringAsync("/refused-once");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var first = await server.ReadUntilAsync(H2Frame.Headers);
        await server.SendAsync(H2Frame.RstStream, 0, first.StreamId, FrameBytes.U32(7));
        var second = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, second.StreamId, "second try");

        Assert.Equal("second try", await request.WaitAsync(Timeouts.Short));
        Assert.NotEqual(first.StreamId, second.StreamId);
        var record = Assert.Single(await proxy.Observer.WaitForAsync(1));
        Assert.Equal(2, record.Attempts);
        Assert.Null(record.Error);
    }

    [Fact]
    public async Task GoAway_InFlightStreamFinishes_NextRequestOpensANewConnection()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var request = client.GetStringAsync("/draining");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var headers = await server.ReadUntilAsync(H2Frame.Headers);
        // GOAWAY that still covers the in-flight stream: it finishes, no new stream may start on this connection.
        await server.SendAsync(H2Frame.GoAway, 0, 0, [.. FrameBytes.U32(headers.StreamId), .. FrameBytes.U32(0)]);
        await RespondAsync(server, headers.StreamId, "drained");
        Assert.Equal("drained", await request.WaitAsync(Timeouts.Short));
        // The client closes the drained connection itself.
        await server.ReadUntilAsync(H2Frame.GoAway);

        var next = client.GetStringAsync("/after");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var nextHeaders = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, nextHeaders.StreamId, "new connection");

        Assert.Equal("new connection", await next.WaitAsync(Timeouts.Short));
        Assert.Equal(2, pool.ConnectionsOpened);
    }

    [Fact]
    public async Task GoAwayBelowTheStream_RefusedUnprocessed_RetriedOnANewConnection()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        await using var pool = new Http2UpstreamPool(connector);
        await using var proxy = await ForwarderHarness.StartAsync(Http1Routing.ForService(Http2UpstreamForwardingTests.Http2ServiceOf("web", server.EndPoint)), http2Pool: pool);
        using var client = proxy.CreateClient();

        var request = client.GetStringAsync("/goaway-refused");
        await server.AcceptAsync();
        await server.HandshakeAsync();
        await server.ReadUntilAsync(H2Frame.Headers);
        await server.SendAsync(H2Frame.GoAway, 0, 0, [.. FrameBytes.U32(0), .. FrameBytes.U32(0)]);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var retried = await server.ReadUntilAsync(H2Frame.Headers);
        await RespondAsync(server, retried.StreamId, "retried");

        Assert.Equal("retried", await request.WaitAsync(Timeouts.Short));
        Assert.Equal(2, pool.ConnectionsOpened);
    }
}

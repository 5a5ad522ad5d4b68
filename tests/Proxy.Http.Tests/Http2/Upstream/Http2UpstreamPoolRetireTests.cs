using Proxy.Core.Addresses;
using Proxy.Http.Tests.Http2.Client;
using Proxy.Http.Tests.Http2.Server;

namespace Proxy.Http.Tests.Http2.Upstream;

/// <summary><see cref="Proxy.Http.Http2.Upstream.Http2UpstreamPool.Retire"/>: a connection with a stream open finishes it, then closes; the next rent connects anew.</summary>
public sealed partial class Http2UpstreamPoolTests
{
    [Fact]
    public async Task Retire_StreamInFlightFinishes_ThenGoAway_NextRentOpensANewConnection()
    {
        await using var server = new RawH2Server();
        using var connector = Http2UpstreamForwardingTests.NewConnector();
        var address = new UpstreamAddress(server.EndPoint);
        await using var pool = new Proxy.Http.Http2.Upstream.Http2UpstreamPool(connector);
        var renting = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var rented = await renting;
        await WriteAsync(rented, "GET /in-flight HTTP/1.1\r\nHost: web\r\n\r\n");
        var headers = await server.ReadUntilAsync(H2Frame.Headers);

        pool.Retire(address);
        Assert.Equal(0, pool.ConnectionCount(address));

        // The request sent before the retirement gets its answer on the old connection.
        await RespondAsync(server, headers.StreamId, "done");
        Assert.Contains("\r\n\r\ndone", await ReadUntilAsync(rented.Connection.Transport.Input, "\r\n\r\ndone"), StringComparison.Ordinal);
        pool.Return(rented, reusable: true);

        // Its last stream ended: the pool closes it (GOAWAY NO_ERROR).
        var goAway = await server.ReadUntilAsync(H2Frame.GoAway);
        Assert.Equal(0u, goAway.ErrorCode);

        var again = RentOkAsync(pool, server.EndPoint);
        await server.AcceptAsync();
        await server.HandshakeAsync();
        var second = await again;
        Assert.False(second.IsReused);
        pool.Return(second, reusable: false);
        Assert.Equal(2, pool.ConnectionsOpened);
    }
}

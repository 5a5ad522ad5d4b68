using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Upstream;

public sealed class UpstreamConnectorTests
{
    [Fact]
    public async Task TryConnectAsync_Listening_ReturnsUnstartedSocketConnectionThatCarriesBytes()
    {
        using var listener = TestListener.Start();
        using var connector = new UpstreamConnector();

        var result = await connector.TryConnectAsync(new UpstreamAddress(listener.EndPoint), CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        using var server = await listener.AcceptAsync();

        Assert.True(result.IsSuccess);
        var connection = Assert.IsType<SocketConnection>(result.Connection);
        await using var _ = connection;
        Assert.False(connection.IsStarted);
        Assert.True(connection.CanTakeOver);
        Assert.Equal(listener.EndPoint, connection.RemoteEndPoint);

        await connection.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("hello")).AsTask().WaitAsync(TestTimeouts.Short);
        await connection.Transport.Output.CompleteAsync();
        Assert.Equal("hello", Encoding.ASCII.GetString(await server.ReadToEndAsync()));
    }

    [Fact]
    public async Task TryConnectAsync_NothingListening_FailsWithRefused()
    {
        using var connector = new UpstreamConnector();
        var destination = new UpstreamAddress(TestSockets.UnusedEndPoint());

        var result = await connector.TryConnectAsync(destination, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Refused, result.Failure.Cause);
        Assert.Equal(destination, result.Failure.Destination);
        Assert.Equal("refused", result.Failure.CauseTag);
        Assert.Equal($"connect to {destination} failed: connection refused", result.Failure.ToString());
    }

    [Fact]
    public async Task TryConnectAsync_AcceptQueueFull_FailsWithTimeoutAfterConnectTimeout()
    {
        using var full = await FullBacklogListener.StartAsync();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromMilliseconds(300) });
        var stopwatch = Stopwatch.StartNew();

        var result = await connector.TryConnectAsync(new UpstreamAddress(full.EndPoint), CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Timeout, result.Failure.Cause);
        Assert.InRange(stopwatch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task TryConnectAsync_CallerCancels_ThrowsInsteadOfReportingTimeout()
    {
        using var full = await FullBacklogListener.StartAsync();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(30) });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => connector.TryConnectAsync(new UpstreamAddress(full.EndPoint), cts.Token).AsTask().WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public async Task ConnectAsync_NothingListening_ThrowsTypedException()
    {
        using var connector = new UpstreamConnector();
        var endPoint = TestSockets.UnusedEndPoint();

        var ex = await Assert.ThrowsAsync<UpstreamConnectException>(() => connector.ConnectAsync(endPoint).AsTask().WaitAsync(TestTimeouts.Short));

        Assert.Equal(ConnectFailureCause.Refused, ex.Failure.Cause);
        Assert.Contains(endPoint.ToString(), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TryConnectAsync_WithMiddleware_AppliesItInOrder()
    {
        using var listener = TestListener.Start();
        var order = new List<string>();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions
        {
            Middleware =
            [
                (c, _) => { order.Add("first"); c.Items["tag"] = "tls-would-go-here"; return ValueTask.FromResult(c); },
                (c, _) => { order.Add("second"); return ValueTask.FromResult(c); },
            ],
        });

        var result = await connector.TryConnectAsync(new UpstreamAddress(listener.EndPoint), CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        using var _ = await listener.AcceptAsync();
        await using var connection = result.Connection!;

        Assert.Equal(["first", "second"], order);
        Assert.Equal("tls-would-go-here", connection.Items["tag"]);
    }

    [Fact]
    public async Task TryConnectAsync_MiddlewareThrows_FailsWithErrorAndResetsConnection()
    {
        using var listener = TestListener.Start();
        using var connector = new UpstreamConnector(new UpstreamConnectorOptions
        {
            Middleware = [(_, _) => throw new InvalidOperationException("handshake failed")],
        });

        var result = await connector.TryConnectAsync(new UpstreamAddress(listener.EndPoint), CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        using var server = await listener.AcceptAsync();

        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectFailureCause.Error, result.Failure.Cause);
        Assert.Contains("handshake failed", result.Failure.ToString(), StringComparison.Ordinal);
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionReset, await server.ReadUntilEndAsync());
    }

    [Fact]
    public void Classify_SocketErrors_MapToCauses()
    {
        Assert.Equal(ConnectFailureCause.Refused, UpstreamConnector.Classify(System.Net.Sockets.SocketError.ConnectionRefused));
        Assert.Equal(ConnectFailureCause.Timeout, UpstreamConnector.Classify(System.Net.Sockets.SocketError.TimedOut));
        Assert.Equal(ConnectFailureCause.Unreachable, UpstreamConnector.Classify(System.Net.Sockets.SocketError.NetworkUnreachable));
        Assert.Equal(ConnectFailureCause.Unreachable, UpstreamConnector.Classify(System.Net.Sockets.SocketError.HostUnreachable));
        Assert.Equal(ConnectFailureCause.Error, UpstreamConnector.Classify(System.Net.Sockets.SocketError.AccessDenied));
    }

    [Fact]
    public async Task ConnectAsync_NonIpEndPoint_Throws()
    {
        using var connector = new UpstreamConnector();

        await Assert.ThrowsAsync<NotSupportedException>(() => connector.ConnectAsync(new DnsEndPoint("localhost", 1)).AsTask());
    }
}

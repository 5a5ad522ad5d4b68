using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;

namespace Proxy.Core.Tests.Transport;

public sealed class SocketTransportFactoryTests
{
    [Fact]
    public async Task BindAsync_PortZero_ReportsBoundPortAndAcceptsUnstartedConnections()
    {
        using var factory = new SocketTransportFactory();
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var endPoint = Assert.IsType<IPEndPoint>(listener.EndPoint);
        Assert.NotEqual(0, endPoint.Port);

        using var client = await TestSockets.ConnectAsync(endPoint);
        await using var connection = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short);

        var socketConnection = Assert.IsType<SocketConnection>(connection);
        Assert.False(socketConnection.IsStarted);
        Assert.True(socketConnection.Socket.NoDelay);
    }

    [Theory]
    [InlineData(true, "127.0.0.1")]
    [InlineData(false, "127.0.0.1")]
    [InlineData(true, "::1")]
    public async Task AcceptAsync_NoDelayOption_IsWhatEveryAcceptedSocketHas(bool noDelay, string address)
    {
        // On Linux the option is set once on the listener and inherited by each accepted socket: read it back from
        // the kernel on several connections, for both settings and both address families.
        using var factory = new SocketTransportFactory(new SocketTransportOptions { NoDelay = noDelay });
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Parse(address), 0));
        var endPoint = (IPEndPoint)listener.EndPoint;
        for (var i = 0; i < 3; i++)
        {
            using var client = await TestSockets.ConnectAsync(endPoint);
            await using var connection = (await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
            var socket = Assert.IsType<SocketConnection>(connection).Socket;
            Assert.Equal(noDelay, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.NoDelay)! != 0);
        }
    }

    [Fact]
    public async Task BindAsync_IPv6Any_AcceptsIPv4AndIPv6Loopback()
    {
        using var factory = new SocketTransportFactory(new SocketTransportOptions { DualMode = true });
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.IPv6Any, 0));
        var port = ((IPEndPoint)listener.EndPoint).Port;

        foreach (var address in new[] { IPAddress.Loopback, IPAddress.IPv6Loopback })
        {
            using var client = await TestSockets.ConnectAsync(new IPEndPoint(address, port));
            await using var connection = (await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
            await client.SendAllAsync(Encoding.ASCII.GetBytes("v"));
            var read = await connection.Transport.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
            Assert.Equal(1, read.Buffer.Length);
            connection.Transport.Input.AdvanceTo(read.Buffer.End);
        }
    }

    [Fact]
    public async Task AcceptAsync_AfterUnbind_ReturnsNull()
    {
        using var factory = new SocketTransportFactory();
        var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var accept = listener.AcceptAsync().AsTask();

        await listener.UnbindAsync();

        Assert.Null(await accept.WaitAsync(TestTimeouts.Short));
        await listener.DisposeAsync();
    }

    [Fact]
    public async Task BindAsync_PortInUse_ThrowsAddressInUse()
    {
        using var factory = new SocketTransportFactory();
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();

        await Assert.ThrowsAsync<AddressInUseException>(() => factory.BindAsync(taken.LocalEndPoint!).AsTask());
    }

    [Fact]
    public async Task BindAsync_PortHeldByAnotherProxyListener_ThrowsAddressInUse()
    {
        // Two proxies (or a proxy and another program that asks for address reuse) must not share a port: .NET's
        // ReuseAddress also sets SO_REUSEPORT on Linux, which would let the kernel split connections between them.
        using var first = new SocketTransportFactory();
        using var second = new SocketTransportFactory();
        await using var listener = await first.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));

        await Assert.ThrowsAsync<AddressInUseException>(() => second.BindAsync(listener.EndPoint).AsTask());
    }

    [Fact]
    public void CanBind_OnlyIpEndPoints()
    {
        using var factory = new SocketTransportFactory();

        Assert.True(factory.CanBind(new IPEndPoint(IPAddress.Loopback, 1)));
        Assert.False(factory.CanBind(new UnixDomainSocketEndPoint("/tmp/x.sock")));
    }

    [Fact]
    public void Constructor_InvalidOptions_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SocketTransportFactory(new SocketTransportOptions { ReadBufferSize = 10 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SocketTransportFactory(new SocketTransportOptions { IoQueueCount = -1 }));
    }

    [Fact]
    public void SocketEngineSetup_Configure_SetsTheVariableDotNetReads()
    {
        var previous = Environment.GetEnvironmentVariable(SocketEngineSetup.InlineCompletionsVariable);
        try
        {
            SocketEngineSetup.Configure(inlineCompletions: false);
            Assert.Equal("0", Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"));
            SocketEngineSetup.Configure(inlineCompletions: true);
            Assert.Equal("1", Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketEngineSetup.InlineCompletionsVariable, previous);
        }
    }
}

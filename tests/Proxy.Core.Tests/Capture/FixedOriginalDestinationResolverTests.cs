using System.Net;
using System.Net.Sockets;
using Proxy.Core.Addresses;
using Proxy.Core.Capture;

namespace Proxy.Core.Tests.Capture;

public sealed class FixedOriginalDestinationResolverTests
{
    [Fact]
    public void TryResolve_Configured_ReturnsTheEndpointEveryTime()
    {
        var expected = new IPEndPoint(IPAddress.Parse("192.0.2.10"), 8080);
        var resolver = new FixedOriginalDestinationResolver(expected);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

        Assert.True(resolver.TryResolve(socket, out var first, out var firstError));
        Assert.True(resolver.TryResolve(socket, out var second, out _));

        Assert.Equal(new OriginalDestination(expected), first);
        Assert.Equal(first, second);
        Assert.Null(firstError);
        Assert.Equal(2, resolver.Calls);
    }

    [Fact]
    public void TryResolve_Failing_ReturnsFalseWithTheError()
    {
        var resolver = FixedOriginalDestinationResolver.Failing("no original destination: test");
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

        Assert.False(resolver.TryResolve(socket, out var destination, out var error));

        Assert.Equal("no original destination: test", error);
        Assert.Equal(default, destination);
    }

    [Fact]
    public void Failing_EmptyError_Throws()
    {
        Assert.Throws<ArgumentException>(() => FixedOriginalDestinationResolver.Failing(" "));
    }
}

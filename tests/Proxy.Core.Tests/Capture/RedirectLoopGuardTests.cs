using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Capture;

namespace Proxy.Core.Tests.Capture;

public sealed class RedirectLoopGuardTests
{
    private static OriginalDestination Dst(string address, int port) => new(new IPEndPoint(IPAddress.Parse(address), port));

    private static ListenAddress Listen(string address, int port) => new(new IPEndPoint(IPAddress.Parse(address), port));

    [Theory]
    [InlineData("127.0.0.1", 15001, "127.0.0.1", 15001)]
    [InlineData("::1", 15001, "::1", 15001)]
    [InlineData("192.0.2.1", 15006, "192.0.2.1", 15006)]
    [InlineData("192.0.2.1", 15006, "::ffff:192.0.2.1", 15006)]
    [InlineData("::ffff:127.0.0.1", 15001, "127.0.0.1", 15001)]
    [InlineData("127.0.0.1", 15001, "0.0.0.0", 15001)]
    [InlineData("::1", 15001, "::", 15001)]
    [InlineData("127.0.0.1", 15001, "::", 15001)]
    public void IsSelf_DestinationIsTheListener_ReturnsTrue(string dst, int dstPort, string listen, int listenPort)
    {
        Assert.True(RedirectLoopGuard.IsSelf(Dst(dst, dstPort), Listen(listen, listenPort)));
    }

    [Theory]
    [InlineData("127.0.0.1", 8080, "127.0.0.1", 15001)]
    [InlineData("192.0.2.2", 15001, "127.0.0.1", 15001)]
    [InlineData("192.0.2.2", 15001, "::ffff:127.0.0.1", 15001)]
    [InlineData("2001:db8::2", 15001, "::1", 15001)]
    [InlineData("192.0.2.2", 15001, "0.0.0.0", 15001)]
    [InlineData("2001:db8::2", 15001, "::", 15001)]
    public void IsSelf_DestinationElsewhere_ReturnsFalse(string dst, int dstPort, string listen, int listenPort)
    {
        Assert.False(RedirectLoopGuard.IsSelf(Dst(dst, dstPort), Listen(listen, listenPort)));
    }
}

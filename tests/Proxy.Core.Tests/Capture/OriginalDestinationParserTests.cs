using System.Net;
using Proxy.Core.Capture;

namespace Proxy.Core.Tests.Capture;

public sealed class OriginalDestinationParserTests
{
    // struct sockaddr_in for 10.0.0.7:8080 as the kernel writes it on a little-endian machine.
    internal static byte[] SockaddrIn(byte a, byte b, byte c, byte d, int port)
    {
        var bytes = new byte[16];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 2), (ushort)2);
        bytes[2] = (byte)(port >> 8);
        bytes[3] = (byte)port;
        bytes[4] = a;
        bytes[5] = b;
        bytes[6] = c;
        bytes[7] = d;
        return bytes;
    }

    internal static byte[] SockaddrIn6(IPAddress address, int port, uint flowInfo = 0, uint scopeId = 0)
    {
        var bytes = new byte[28];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 2), (ushort)10);
        bytes[2] = (byte)(port >> 8);
        bytes[3] = (byte)port;
        BitConverter.TryWriteBytes(bytes.AsSpan(4, 4), flowInfo);
        address.TryWriteBytes(bytes.AsSpan(8, 16), out _);
        BitConverter.TryWriteBytes(bytes.AsSpan(24, 4), scopeId);
        return bytes;
    }

    [Fact]
    public void TryParse_Ipv4_ReturnsAddressAndPort()
    {
        var ok = OriginalDestinationParser.TryParse(SockaddrIn(10, 0, 0, 7, 8080), out var endPoint);

        Assert.True(ok);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.7"), 8080), endPoint);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(65535)]
    public void TryParse_Ipv4Ports_ReadsNetworkByteOrder(int port)
    {
        Assert.True(OriginalDestinationParser.TryParse(SockaddrIn(192, 0, 2, 1, port), out var endPoint));
        Assert.Equal(port, endPoint.Port);
        Assert.Equal(IPAddress.Parse("192.0.2.1"), endPoint.Address);
    }

    [Fact]
    public void TryParse_Ipv6_ReturnsAddressPortAndScope()
    {
        var address = IPAddress.Parse("2001:db8::7");

        var ok = OriginalDestinationParser.TryParse(SockaddrIn6(address, 443, flowInfo: 0x12345, scopeId: 0), out var endPoint);

        Assert.True(ok);
        Assert.Equal(new IPEndPoint(address, 443), endPoint);
    }

    [Fact]
    public void TryParse_Ipv6LinkLocal_KeepsScopeId()
    {
        var ok = OriginalDestinationParser.TryParse(SockaddrIn6(IPAddress.Parse("fe80::1"), 80, scopeId: 3), out var endPoint);

        Assert.True(ok);
        Assert.NotNull(endPoint);
        Assert.Equal(3, endPoint.Address.ScopeId);
        Assert.Equal("fe80::1%3", endPoint.Address.ToString());
    }

    [Fact]
    public void TryParse_Ipv4InLargerBuffer_IgnoresTrailingBytes()
    {
        var bytes = new byte[28];
        SockaddrIn(127, 0, 0, 1, 15001).CopyTo(bytes, 0);
        bytes[20] = 0xAA;

        Assert.True(OriginalDestinationParser.TryParse(bytes, out var endPoint));
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 15001), endPoint);
    }

    [Fact]
    public void TryParse_EveryTruncatedIpv4Prefix_ReturnsFalse()
    {
        var full = SockaddrIn(10, 1, 2, 3, 80);
        for (var length = 0; length < full.Length; length++)
        {
            Assert.False(OriginalDestinationParser.TryParse(full.AsSpan(0, length), out var endPoint), $"prefix of {length} bytes");
            Assert.Null(endPoint);
        }
    }

    [Fact]
    public void TryParse_EveryTruncatedIpv6Prefix_ReturnsFalse()
    {
        var full = SockaddrIn6(IPAddress.Parse("2001:db8::1"), 80);
        for (var length = 0; length < full.Length; length++)
        {
            Assert.False(OriginalDestinationParser.TryParse(full.AsSpan(0, length), out var endPoint), $"prefix of {length} bytes");
            Assert.Null(endPoint);
        }
    }

    [Theory]
    [InlineData(0)]   // AF_UNSPEC
    [InlineData(1)]   // AF_UNIX
    [InlineData(17)]  // AF_PACKET
    [InlineData(512)] // AF_INET in the wrong byte order
    public void TryParse_WrongFamily_ReturnsFalse(ushort family)
    {
        var bytes = new byte[28];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 2), family);

        Assert.False(OriginalDestinationParser.TryParse(bytes, out var endPoint));
        Assert.Null(endPoint);
    }
}

using System.Net;
using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class IptablesOptionsParserTests
{
    [Fact]
    public void Parse_NoFlags_IstioDefaults()
    {
        var options = IptablesOptionsParser.Parse(new IptablesArguments(), out var errors);

        Assert.Empty(errors);
        Assert.NotNull(options);
        Assert.Equal(15006, options.InboundPort);
        Assert.Equal(15001, options.OutboundPort);
        Assert.Equal(1337, options.ProxyUid);
        Assert.Null(options.ProxyGid);
        Assert.Null(options.ProxyMark);
        Assert.Equal([15000, 15021], options.ProxyPorts);
        Assert.Null(options.IncludeInboundPorts);
        Assert.Null(options.IncludeOutboundCidrs);
        Assert.True(options.Ipv6);
        Assert.Equal(IptablesMode.Auto, options.Mode);
        Assert.True(options.CapturesInbound);
    }

    [Fact]
    public void Parse_AllFlags_ParsedAndNormalised()
    {
        var options = IptablesOptionsParser.Parse(new IptablesArguments
        {
            InboundPort = "16006",
            OutboundPort = " 16001 ",
            ProxyUid = "0",
            ProxyGid = "1337",
            ProxyMark = "0X539/0xFF00",
            ExcludeInboundPorts = "22,22,8443",
            ExcludeOutboundCidrs = "10.1.2.3/8,2001:DB8::1/32,192.0.2.9",
            IncludeOutboundCidrs = "*",
            IncludeInboundPorts = " * ",
            Ipv6 = "False",
            Mode = "Legacy",
            Remove = true,
            DryRun = true,
        }, out var errors);

        Assert.Empty(errors);
        Assert.NotNull(options);
        Assert.Equal(16006, options.InboundPort);
        Assert.Equal(16001, options.OutboundPort);
        Assert.Equal(0, options.ProxyUid);
        Assert.Equal(1337, options.ProxyGid);
        Assert.Equal(new PacketMark(0x539, 0xff00), options.ProxyMark);
        Assert.Equal("0x539/0xff00", options.ProxyMark.ToString());
        Assert.Equal([22, 8443], options.ExcludeInboundPorts);
        Assert.Equal(["10.0.0.0/8", "2001:db8::/32", "192.0.2.9/32"], options.ExcludeOutboundCidrs.Select(n => n.ToString()));
        Assert.Null(options.IncludeOutboundCidrs);
        Assert.Null(options.IncludeInboundPorts);
        Assert.False(options.Ipv6);
        Assert.Equal(IptablesMode.Legacy, options.Mode);
        Assert.True(options.Remove);
        Assert.True(options.DryRun);
    }

    [Fact]
    public void Parse_ManyBadFlags_ReportsEveryErrorNamingFlagAndValue()
    {
        var options = IptablesOptionsParser.Parse(new IptablesArguments
        {
            InboundPort = "0",
            OutboundPort = "http",
            ProxyUid = "",
            ProxyMark = "0",
            ExcludeInboundPorts = "22,70000",
            ExcludeOutboundCidrs = "10.0.0.0/33,not-an-ip",
            Ipv6 = "yes",
            Mode = "iptables",
        }, out var errors);

        Assert.Null(options);
        Assert.Equal(
            [
                "--inbound-port '0' is not a TCP port (1-65535).",
                "--outbound-port 'http' is not a TCP port (1-65535).",
                "--proxy-mark '0' is not a non-zero mark (decimal or 0x hex, optionally /mask).",
                "--exclude-inbound-ports: '70000' is not a TCP port (1-65535).",
                "--exclude-outbound-cidrs: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32).",
                "--exclude-outbound-cidrs: 'not-an-ip' is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32).",
                "--ipv6 'yes' must be true or false.",
                "--mode 'iptables' must be auto, nft or legacy.",
                "--proxy-uid, --proxy-gid and --proxy-mark are all empty: the proxy's own connections would be captured again (a redirect loop). Give at least one.",
            ],
            errors);
    }

    [Fact]
    public void Parse_SameInboundAndOutboundPort_Rejected()
    {
        var options = IptablesOptionsParser.Parse(new IptablesArguments { InboundPort = "15001" }, out var errors);

        Assert.Null(options);
        Assert.Equal(["--inbound-port and --outbound-port are both 15001: the inbound and outbound capture listeners need different ports."], errors);
    }

    [Theory]
    [InlineData("10.1.2.3/8", "10.0.0.0/8")]
    [InlineData("0.0.0.0/0", "0.0.0.0/0")]
    [InlineData("192.0.2.1", "192.0.2.1/32")]
    [InlineData("2001:db8:abcd::1/33", "2001:db8:8000::/33")]
    [InlineData("::1", "::1/128")]
    public void TryCidr_Valid_ClearsHostBits(string text, string expected)
    {
        Assert.True(IptablesOptionsParser.TryCidr(text, out var network));
        Assert.Equal(IPNetwork.Parse(expected), network);
    }

    [Theory]
    [InlineData("10.0.0.0/")]
    [InlineData("10.0.0.0/-1")]
    [InlineData("::/129")]
    [InlineData("fe80::1%2")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("")]
    public void TryCidr_Invalid_ReturnsFalse(string text)
    {
        Assert.False(IptablesOptionsParser.TryCidr(text, out _));
    }
}

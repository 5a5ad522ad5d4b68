using System.Net;
using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class IptablesRulesTests
{
    private const string Chains =
        "*nat\n" +
        ":PROXY_INBOUND - [0:0]\n" +
        ":PROXY_IN_REDIRECT - [0:0]\n" +
        ":PROXY_OUTPUT - [0:0]\n" +
        ":PROXY_REDIRECT - [0:0]\n" +
        "-A PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n" +
        "-A PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n";

    private const string DefaultInbound =
        "-A PROXY_INBOUND -p tcp --dport 15000 -j RETURN\n" +
        "-A PROXY_INBOUND -p tcp --dport 15001 -j RETURN\n" +
        "-A PROXY_INBOUND -p tcp --dport 15006 -j RETURN\n" +
        "-A PROXY_INBOUND -p tcp --dport 15021 -j RETURN\n" +
        "-A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT\n";

    private const string UidRules4 =
        "-A PROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n" +
        "-A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j PROXY_IN_REDIRECT\n" +
        "-A PROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN\n" +
        "-A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN\n" +
        "-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n";

    private const string Jumps =
        "-A PREROUTING -p tcp -j PROXY_INBOUND\n" +
        "-A OUTPUT -p tcp -j PROXY_OUTPUT\n" +
        "COMMIT\n";

    private static string Apply(IptablesOptions options, IpFamily family = IpFamily.V4, NatTableState? existing = null) =>
        IptablesRules.BuildApply(options, family, existing ?? NatTableState.Empty);

    private static IptablesOptions Parse(IptablesArguments arguments)
    {
        var options = IptablesOptionsParser.Parse(arguments, out var errors);
        Assert.True(options is not null, string.Join("\n", errors));
        return options;
    }

    [Fact]
    public void BuildApply_DefaultsIpv4_IstioShapedRules()
    {
        Assert.Equal(
            Chains + DefaultInbound + UidRules4 +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(new IptablesOptions()));
    }

    [Fact]
    public void BuildApply_DefaultsIpv6_UsesIpv6LoopbackAndPassthroughSource()
    {
        Assert.Equal(
            Chains + DefaultInbound +
            "-A PROXY_OUTPUT -o lo -s ::6/128 -j RETURN\n" +
            "-A PROXY_OUTPUT ! -d ::1/128 -o lo -m owner --uid-owner 1337 -j PROXY_IN_REDIRECT\n" +
            "-A PROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT -d ::1/128 -j RETURN\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(new IptablesOptions(), IpFamily.V6));
    }

    [Fact]
    public void BuildApply_CustomPorts_RedirectsToThemAndExcludesThemInbound()
    {
        var rules = Apply(Parse(new IptablesArguments { InboundPort = "16006", OutboundPort = "16001", ProxyPorts = "9901" }));

        Assert.Equal(
            "*nat\n" +
            ":PROXY_INBOUND - [0:0]\n" +
            ":PROXY_IN_REDIRECT - [0:0]\n" +
            ":PROXY_OUTPUT - [0:0]\n" +
            ":PROXY_REDIRECT - [0:0]\n" +
            "-A PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n" +
            "-A PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n" +
            "-A PROXY_INBOUND -p tcp --dport 9901 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 16001 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 16006 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT\n" +
            UidRules4 +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            rules);
    }

    [Fact]
    public void BuildApply_GidAndMarkWithoutUid_ExemptsByGidThenMark()
    {
        var rules = Apply(Parse(new IptablesArguments { ProxyUid = "", ProxyGid = "1337", ProxyMark = "0x539" }));

        Assert.Equal(
            Chains + DefaultInbound +
            "-A PROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n" +
            "-A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j PROXY_IN_REDIRECT\n" +
            "-A PROXY_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT -m owner --gid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m mark --mark 0x539 -j PROXY_IN_REDIRECT\n" +
            "-A PROXY_OUTPUT -o lo -m mark ! --mark 0x539 -j RETURN\n" +
            "-A PROXY_OUTPUT -m mark --mark 0x539 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            rules);
    }

    [Fact]
    public void BuildApply_UidAndMaskedMark_WritesBothInOrder()
    {
        var rules = Apply(Parse(new IptablesArguments { ProxyMark = "1337/0xffff" }));

        Assert.Contains(
            "-A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m mark --mark 0x539/0xffff -j PROXY_IN_REDIRECT\n" +
            "-A PROXY_OUTPUT -o lo -m mark ! --mark 0x539/0xffff -j RETURN\n" +
            "-A PROXY_OUTPUT -m mark --mark 0x539/0xffff -j RETURN\n" +
            "-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n",
            rules,
            StringComparison.Ordinal);
    }

    [Fact]
    public void BuildApply_ExcludeInboundPorts_MergedSortedWithProxyPorts()
    {
        var rules = Apply(Parse(new IptablesArguments { ExcludeInboundPorts = "22, 15021,8443" }));

        Assert.Equal(
            Chains +
            "-A PROXY_INBOUND -p tcp --dport 22 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 8443 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15000 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15001 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15006 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15021 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT\n" +
            UidRules4 +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            rules);
    }

    [Fact]
    public void BuildApply_IncludeInboundPorts_RedirectsOnlyThose()
    {
        var rules = Apply(Parse(new IptablesArguments { IncludeInboundPorts = "8080,9090" }));

        Assert.Equal(
            Chains +
            "-A PROXY_INBOUND -p tcp --dport 15000 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15001 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15006 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 15021 -j RETURN\n" +
            "-A PROXY_INBOUND -p tcp --dport 8080 -j PROXY_IN_REDIRECT\n" +
            "-A PROXY_INBOUND -p tcp --dport 9090 -j PROXY_IN_REDIRECT\n" +
            UidRules4 +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            rules);
    }

    [Fact]
    public void BuildApply_IncludeInboundPortsEmpty_NoInboundCaptureAndNoPreroutingJump()
    {
        var rules = Apply(Parse(new IptablesArguments { IncludeInboundPorts = "" }));

        Assert.Equal(
            Chains +
            "-A PROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n" +
            "-A PROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            "-A OUTPUT -p tcp -j PROXY_OUTPUT\n" +
            "COMMIT\n",
            rules);
    }

    [Fact]
    public void BuildApply_ExcludeOutboundPortsAndCidrs_ReturnBeforeRedirectPerFamily()
    {
        var options = Parse(new IptablesArguments
        {
            ExcludeOutboundPorts = "3306,5432",
            ExcludeOutboundCidrs = "10.96.0.0/12,169.254.169.254,2001:db8:1::/48",
        });

        Assert.Equal(
            Chains + DefaultInbound + UidRules4 +
            "-A PROXY_OUTPUT -d 10.96.0.0/12 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 169.254.169.254/32 -j RETURN\n" +
            "-A PROXY_OUTPUT -p tcp --dport 3306 -j RETURN\n" +
            "-A PROXY_OUTPUT -p tcp --dport 5432 -j RETURN\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(options, IpFamily.V4));
        Assert.EndsWith(
            "-A PROXY_OUTPUT -d ::1/128 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 2001:db8:1::/48 -j RETURN\n" +
            "-A PROXY_OUTPUT -p tcp --dport 3306 -j RETURN\n" +
            "-A PROXY_OUTPUT -p tcp --dport 5432 -j RETURN\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(options, IpFamily.V6),
            StringComparison.Ordinal);
    }

    [Fact]
    public void BuildApply_IncludeOutboundCidrs_RedirectsOnlyThoseOfTheFamily()
    {
        var options = Parse(new IptablesArguments { IncludeOutboundCidrs = "10.0.0.0/8, 2001:db8::/32" });

        Assert.EndsWith(
            "-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 10.0.0.0/8 -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(options, IpFamily.V4),
            StringComparison.Ordinal);
        Assert.EndsWith(
            "-A PROXY_OUTPUT -d ::1/128 -j RETURN\n" +
            "-A PROXY_OUTPUT -d 2001:db8::/32 -j PROXY_REDIRECT\n" +
            Jumps,
            Apply(options, IpFamily.V6),
            StringComparison.Ordinal);
    }

    [Fact]
    public void BuildApply_IncludeOutboundCidrsEmpty_NothingRedirectedOutbound()
    {
        var rules = Apply(Parse(new IptablesArguments { IncludeOutboundCidrs = "" }));

        Assert.DoesNotContain("-j PROXY_REDIRECT", rules, StringComparison.Ordinal);
        Assert.EndsWith("-A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n" + Jumps, rules, StringComparison.Ordinal);
    }

    [Fact]
    public void BuildApply_JumpsAlreadyPresent_AreNotAddedAgain()
    {
        var existing = new NatTableState(IptablesRules.Chains, [IptablesRules.PreroutingJump, IptablesRules.OutputJump]);

        var rules = Apply(new IptablesOptions(), existing: existing);

        Assert.Equal(Chains + DefaultInbound + UidRules4 + "-A PROXY_OUTPUT -j PROXY_REDIRECT\nCOMMIT\n", rules);
    }

    [Fact]
    public void BuildApply_DuplicateAndUnwantedJumps_AreDeleted()
    {
        var existing = new NatTableState(
            IptablesRules.Chains,
            ["-A OUTPUT -p tcp -j PROXY_OUTPUT", "-A OUTPUT -p tcp -j PROXY_OUTPUT", "-A PREROUTING -p tcp -j PROXY_INBOUND", "-A POSTROUTING -j PROXY_REDIRECT"]);

        var rules = Apply(Parse(new IptablesArguments { IncludeInboundPorts = "" }), existing: existing);

        Assert.EndsWith(
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            "-D OUTPUT -p tcp -j PROXY_OUTPUT\n" +
            "-D PREROUTING -p tcp -j PROXY_INBOUND\n" +
            "-D POSTROUTING -j PROXY_REDIRECT\n" +
            "COMMIT\n",
            rules,
            StringComparison.Ordinal);
    }

    [Fact]
    public void BuildRemove_ChainsAndJumps_DeletesJumpsThenChains()
    {
        var existing = new NatTableState(
            [IptablesRules.OutputChain, IptablesRules.RedirectChain],
            ["-A OUTPUT -p tcp -j PROXY_OUTPUT"]);

        Assert.Equal(
            "*nat\n" +
            ":PROXY_INBOUND - [0:0]\n" +
            ":PROXY_IN_REDIRECT - [0:0]\n" +
            ":PROXY_OUTPUT - [0:0]\n" +
            ":PROXY_REDIRECT - [0:0]\n" +
            "-D OUTPUT -p tcp -j PROXY_OUTPUT\n" +
            "-X PROXY_INBOUND\n" +
            "-X PROXY_IN_REDIRECT\n" +
            "-X PROXY_OUTPUT\n" +
            "-X PROXY_REDIRECT\n" +
            "COMMIT\n",
            IptablesRules.BuildRemove(existing));
    }

    [Fact]
    public void BuildRemove_NothingOfOurs_ReturnsNull()
    {
        Assert.Null(IptablesRules.BuildRemove(NatTableState.Empty));
    }

    [Fact]
    public void Parse_SaveOutput_FindsOurChainsAndJumpsOnlyInNat()
    {
        const string save =
            "# Generated by iptables-save v1.8.9 on Thu Nov 26 07:15:03 2026\n" +
            "*filter\n" +
            ":INPUT ACCEPT [0:0]\n" +
            ":PROXY_OUTPUT - [0:0]\n" +
            "-A INPUT -j PROXY_OUTPUT\n" +
            "COMMIT\n" +
            "*nat\n" +
            ":PREROUTING ACCEPT [0:0]\n" +
            ":OUTPUT ACCEPT [0:0]\n" +
            ":KUBE-SERVICES - [0:0]\n" +
            ":PROXY_INBOUND - [0:0]\n" +
            ":PROXY_OUTPUT - [0:0]\n" +
            "-A PREROUTING -j KUBE-SERVICES\n" +
            "-A PREROUTING -p tcp -j PROXY_INBOUND\n" +
            "-A OUTPUT -p tcp -j PROXY_OUTPUT\r\n" +
            "-A OUTPUT -p tcp -j PROXY_OUTPUT_OTHER\n" +
            "-A PROXY_OUTPUT -j PROXY_REDIRECT\n" +
            "COMMIT\n" +
            "# Completed on Thu Nov 26 07:15:03 2026\n";

        var state = NatTableState.Parse(save);

        Assert.Equal(["PROXY_INBOUND", "PROXY_OUTPUT"], state.OurChains);
        Assert.Equal(["-A PREROUTING -p tcp -j PROXY_INBOUND", "-A OUTPUT -p tcp -j PROXY_OUTPUT"], state.JumpRules);
        Assert.True(state.HasAny);
    }

    [Fact]
    public void Parse_EmptyNat_HasNothing()
    {
        var state = NatTableState.Parse("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");

        Assert.False(state.HasAny);
    }
}

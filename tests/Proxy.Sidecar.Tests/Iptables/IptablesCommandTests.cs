using Proxy.Sidecar.Iptables;
using Proxy.Sidecar.Tests.Capture;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class IptablesCommandTests
{
    private static (int ExitCode, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var exitCode = TestProgram.RunSidecarCommand(["iptables", .. args], output, error);
        return (exitCode, output.ToString(), error.ToString());
    }

    [Fact]
    public void DryRun_Defaults_PrintsExactRestoreInputForBothFamilies()
    {
        var (exitCode, output, error) = Run("--dry-run");

        Assert.Equal(0, exitCode);
        Assert.Equal("", error);
        Assert.Equal(
            """
            # IPv4: input for iptables-restore --noflush
            *nat
            :PROXY_INBOUND - [0:0]
            :PROXY_IN_REDIRECT - [0:0]
            :PROXY_OUTPUT - [0:0]
            :PROXY_REDIRECT - [0:0]
            -A PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
            -A PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001
            -A PROXY_INBOUND -p tcp --dport 15000 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15001 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15006 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15021 -j RETURN
            -A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
            -A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
            -A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN
            -A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN
            -A PROXY_OUTPUT -j PROXY_REDIRECT
            -A PREROUTING -p tcp -j PROXY_INBOUND
            -A OUTPUT -p tcp -j PROXY_OUTPUT
            COMMIT
            # IPv6: input for ip6tables-restore --noflush
            *nat
            :PROXY_INBOUND - [0:0]
            :PROXY_IN_REDIRECT - [0:0]
            :PROXY_OUTPUT - [0:0]
            :PROXY_REDIRECT - [0:0]
            -A PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
            -A PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001
            -A PROXY_INBOUND -p tcp --dport 15000 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15001 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15006 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15021 -j RETURN
            -A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -s ::6/128 -j RETURN
            -A PROXY_OUTPUT ! -d ::1/128 -o lo -m owner --uid-owner 1337 -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
            -A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN
            -A PROXY_OUTPUT -d ::1/128 -j RETURN
            -A PROXY_OUTPUT -j PROXY_REDIRECT
            -A PREROUTING -p tcp -j PROXY_INBOUND
            -A OUTPUT -p tcp -j PROXY_OUTPUT
            COMMIT

            """,
            output);
    }

    [Fact]
    public void DryRun_RemoveIpv4Only_PrintsRemovalInput()
    {
        var (exitCode, output, _) = Run("--dry-run", "--remove", "--ipv6", "false");

        Assert.Equal(0, exitCode);
        Assert.Equal(
            """
            # IPv4: input for iptables-restore --noflush
            *nat
            :PROXY_INBOUND - [0:0]
            :PROXY_IN_REDIRECT - [0:0]
            :PROXY_OUTPUT - [0:0]
            :PROXY_REDIRECT - [0:0]
            -D PREROUTING -p tcp -j PROXY_INBOUND
            -D OUTPUT -p tcp -j PROXY_OUTPUT
            -X PROXY_INBOUND
            -X PROXY_IN_REDIRECT
            -X PROXY_OUTPUT
            -X PROXY_REDIRECT
            COMMIT

            """,
            output);
    }

    [Fact]
    public void DryRun_WithFlags_ReflectsEveryFlag()
    {
        var (exitCode, output, _) = Run(
            "--dry-run", "--ipv6", "false", "--inbound-port", "16006", "--outbound-port", "16001", "--proxy-uid", "2000", "--proxy-gid", "2001",
            "--exclude-inbound-ports", "22", "--exclude-outbound-ports", "53", "--exclude-outbound-cidrs", "10.96.0.0/12,fd00::/8");

        Assert.Equal(0, exitCode);
        Assert.Equal(
            """
            # IPv4: input for iptables-restore --noflush
            *nat
            :PROXY_INBOUND - [0:0]
            :PROXY_IN_REDIRECT - [0:0]
            :PROXY_OUTPUT - [0:0]
            :PROXY_REDIRECT - [0:0]
            -A PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006
            -A PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 16001
            -A PROXY_INBOUND -p tcp --dport 22 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15000 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 15021 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 16001 -j RETURN
            -A PROXY_INBOUND -p tcp --dport 16006 -j RETURN
            -A PROXY_INBOUND -p tcp -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
            -A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 2000 -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -m owner ! --uid-owner 2000 -j RETURN
            -A PROXY_OUTPUT -m owner --uid-owner 2000 -j RETURN
            -A PROXY_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 2001 -j PROXY_IN_REDIRECT
            -A PROXY_OUTPUT -o lo -m owner ! --gid-owner 2001 -j RETURN
            -A PROXY_OUTPUT -m owner --gid-owner 2001 -j RETURN
            -A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN
            -A PROXY_OUTPUT -d 10.96.0.0/12 -j RETURN
            -A PROXY_OUTPUT -p tcp --dport 53 -j RETURN
            -A PROXY_OUTPUT -j PROXY_REDIRECT
            -A PREROUTING -p tcp -j PROXY_INBOUND
            -A OUTPUT -p tcp -j PROXY_OUTPUT
            COMMIT

            """,
            output);
    }

    [Fact]
    public void Invoke_BadValuesAndUnknownToken_ExitsUsageWithEveryError()
    {
        var (exitCode, output, error) = Run("--dry-run", "--inbound-port", "x", "--mode", "foo", "bogus");

        Assert.Equal(IptablesCommand.UsageError, exitCode);
        Assert.Equal("", output);
        Assert.Equal(
            "sidecar iptables: unknown argument(s): bogus. See 'sidecar iptables --help'.\n" +
            "sidecar iptables: --inbound-port 'x' is not a TCP port (1-65535).\n" +
            "sidecar iptables: --mode 'foo' must be auto, nft or legacy.\n",
            error);
    }

    [Fact]
    public void Invoke_OptionWithoutValue_ExitsUsage()
    {
        var (exitCode, _, error) = Run("--inbound-port");

        Assert.Equal(64, exitCode);
        Assert.Contains("--inbound-port", error, StringComparison.Ordinal);
    }
}

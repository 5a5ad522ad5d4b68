using Proxy.Core.Configuration;
using Proxy.Sidecar.Cli;

namespace Proxy.Sidecar.Tests.Cli;

public class CommandLineTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await SidecarCommandLine.InvokeAsync(args, stdout, stderr).WaitAsync(TimeSpan.FromSeconds(30));
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Help_ListsEveryFlagWithItsDefault()
    {
        var (code, output, _) = await RunAsync("--help");
        Assert.Equal(0, code);
        Assert.Contains("--config", output, StringComparison.Ordinal);
        foreach (var setting in Setting.All)
        {
            Assert.Contains("--" + setting.Flag, output, StringComparison.Ordinal);
            Assert.Contains($"[default: {setting.Default}]", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ListenerAddressInUse_Exit1_NamingTheListenerAndAddress()
    {
        // Another process's listener holds the port: the sidecar says which of its listeners could not bind, and exits.
        using var taken = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        taken.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        taken.Listen();
        var address = taken.LocalEndPoint!.ToString()!;

        var (code, _, err) = await RunAsync("--outbound-listen", address, "--inbound-listen", "off", "--admin-listen", "off");
        Assert.Equal(1, code);
        Assert.Contains($"error: cannot start listeners: Failed to bind listener outbound to address {address}: address already in use.", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownFlag_Exit64()
    {
        var (code, _, err) = await RunAsync("--no-such-flag", "1");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--no-such-flag", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadValues_AllReportedAtOnce_Exit64()
    {
        var (code, _, err) = await RunAsync("--backlog", "x", "--splice", "sometimes", "--connect-timeout", "soon");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("error: --backlog: \"x\" is not a whole number", err, StringComparison.Ordinal);
        Assert.Contains("error: --splice: \"sometimes\" is not one of auto, on, off", err, StringComparison.Ordinal);
        Assert.Contains("error: --connect-timeout: \"soon\" is not a duration", err, StringComparison.Ordinal);
        Assert.Contains("3 configuration error(s)", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConfigFileErrors_AndFlagErrors_ReportedTogether_Exit64()
    {
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, """{ "services": [ { "name": "a", "endpoints": ["nowhere"] } ], "colour": "blue" }""");
            var (code, _, err) = await RunAsync("--config", file, "--max-connections", "-1");
            Assert.Equal(ExitCodes.Usage, code);
            Assert.Contains("error: services[0].endpoints[0]: \"nowhere\" is not an address with a port", err, StringComparison.Ordinal);
            Assert.Contains("error: colour: unknown key", err, StringComparison.Ordinal);
            Assert.Contains("error: --max-connections: \"-1\" is not a whole number", err, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task MissingConfigFile_Exit64_NamesTheFlag()
    {
        var (code, _, err) = await RunAsync("--config", "/nonexistent/proxy.json");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("error: --config: cannot read /nonexistent/proxy.json", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunSubcommand_AcceptsTheSameFlags()
    {
        var (code, _, err) = await RunAsync("run", "--backlog", "nope");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--backlog", err, StringComparison.Ordinal);
    }
}

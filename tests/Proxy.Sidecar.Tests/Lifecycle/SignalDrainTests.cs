using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Sidecar.Cli;
using Proxy.Sidecar.Tests.Capture;

namespace Proxy.Sidecar.Tests.Lifecycle;

/// <summary>
/// The sidecar as its own process, stopped by SIGTERM the way Kubernetes stops a pod: <c>sidecar wait</c> sees it ready,
/// SIGTERM turns /ready to 503 and starts the drain, an open TCP connection keeps the process alive (it is not killed
/// and does not exit early), and once that connection ends the process exits 0 on its own, reporting the drain.
/// </summary>
public sealed class SignalDrainTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly EchoServer _echo = new();
    private string _config = "";

    public Task InitializeAsync()
    {
        _config = Path.GetTempFileName();
        return File.WriteAllTextAsync(_config, $$"""
            {
              "services": [ { "name": "db", "endpoints": [ "{{_echo.EndPoint}}" ] } ],
              "listeners": [ { "name": "db", "address": "127.0.0.1:0", "service": "db", "protocol": "tcp" } ]
            }
            """);
    }

    public async Task DisposeAsync()
    {
        File.Delete(_config);
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task Sigterm_DrainsUntilConnectionsEnd_ThenExits0()
    {
        Assert.True(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "signals are POSIX");
        var start = new ProcessStartInfo(DotnetHost.Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList =
            {
                Path.Combine(AppContext.BaseDirectory, "sidecar.dll"), "--config", _config, "--outbound-listen", "off", "--inbound-listen", "off",
                "--admin-listen", "127.0.0.1:0", "--drain-timeout", "25s",
            },
        };
        using var process = Process.Start(start)!;
        try
        {
            var stderr = process.StandardError.ReadToEndAsync();
            var addresses = new Dictionary<string, IPEndPoint>(StringComparer.Ordinal);
            while (addresses.Count < 2)
            {
                var line = await process.StandardOutput.ReadLineAsync().WaitAsync(Timeout)
                    ?? throw new Xunit.Sdk.XunitException($"the sidecar ended before listening: {await stderr.WaitAsync(Timeout)}");
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 2 && parts[0] is "admin" or "db" && IPEndPoint.TryParse(parts[1], out var address))
                {
                    addresses[parts[0]] = address;
                }
            }

            var admin = addresses["admin"].ToString();
            var (waitCode, waitErr) = await WaitAsync(admin, "20s");
            Assert.True(waitCode == ExitCodes.Ok, waitErr);

            using var client = new TcpClient();
            await client.ConnectAsync(addresses["db"]).WaitAsync(Timeout);
            var stream = client.GetStream();
            await EchoAsync(stream, "before");

            Kill("TERM", process.Id);
            string? draining;
            do
            {
                draining = await process.StandardOutput.ReadLineAsync().WaitAsync(Timeout);
            }
            while (draining is not null && !draining.StartsWith("sidecar: draining", StringComparison.Ordinal));

            Assert.Equal("sidecar: draining (signal), up to 25s", draining);

            // Draining, not gone: /ready says so, and the open connection still forwards.
            var (notReady, notReadyErr) = await WaitAsync(admin, "3s");
            Assert.Equal(ExitCodes.Failure, notReady);
            Assert.Contains("last: 503 not ready: draining", notReadyErr, StringComparison.Ordinal);
            await EchoAsync(stream, "during");
            Assert.False(process.HasExited);

            client.Client.Shutdown(SocketShutdown.Send);
            Assert.Equal(0, await stream.ReadAsync(new byte[8]).AsTask().WaitAsync(Timeout));

            var rest = await process.StandardOutput.ReadToEndAsync().WaitAsync(Timeout);
            await process.WaitForExitAsync().WaitAsync(Timeout);
            var errors = await stderr.WaitAsync(Timeout);
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}; stderr: {errors}");
            var stopped = rest.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Single(static l => l.StartsWith("sidecar: stopped", StringComparison.Ordinal));
            Assert.Matches(@"^sidecar: stopped \(signal\): drained in \d+ ms; 1 connection\(s\) were open, 0 cut at the drain timeout$", stopped);
            var ms = int.Parse(stopped.Split(' ')[5], CultureInfo.InvariantCulture);
            Assert.True(ms < 20_000, stopped);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    private static async Task<(int Code, string Err)> WaitAsync(string admin, string timeout)
    {
        var stderr = new StringWriter();
        var code = await SidecarCommandLine.InvokeAsync(["wait", "--admin", admin, "--timeout", timeout], new StringWriter(), stderr).WaitAsync(Timeout);
        return (code, stderr.ToString());
    }

    private static void Kill(string signal, int pid)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + signal, pid.ToString(CultureInfo.InvariantCulture) } })!;
        kill.WaitForExit(10_000);
        Assert.Equal(0, kill.ExitCode);
    }

    private static async Task EchoAsync(NetworkStream stream, string text)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        await stream.WriteAsync(bytes).AsTask().WaitAsync(Timeout);
        var back = new byte[bytes.Length];
        await stream.ReadExactlyAsync(back).AsTask().WaitAsync(Timeout);
        Assert.Equal(text, Encoding.ASCII.GetString(back));
    }
}

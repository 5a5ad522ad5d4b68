using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Admin;
using Proxy.Sidecar.App;
using Proxy.Sidecar.Cli;

namespace Proxy.Sidecar.Tests.Lifecycle;

/// <summary><c>sidecar wait</c>, run in-process the way the CLI runs it, against a real sidecar's admin listener or a scripted one.</summary>
public sealed class WaitCommandTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await SidecarCommandLine.InvokeAsync(args, stdout, stderr).WaitAsync(Timeout);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static async Task<SidecarHost> StartHostAsync()
    {
        var host = new SidecarHost(
            new ProxyConfig { OutboundListen = null, InboundListen = null, AdminListen = new IPEndPoint(IPAddress.Loopback, 0) },
            NullLoggerFactory.Instance);
        await host.StartAsync(CancellationToken.None).WaitAsync(Timeout);
        return host;
    }

    [Fact]
    public async Task Wait_SidecarReady_Exit0()
    {
        await using var host = await StartHostAsync();
        var (code, output, err) = await RunAsync("wait", "--admin", host.AddressOf("admin")!.ToString()!, "--timeout", "10s");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.StartsWith($"sidecar: ready (http://{host.AddressOf("admin")}/ready, after 1 attempt(s))", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wait_AdminAsUrl_Exit0()
    {
        await using var host = await StartHostAsync();
        var (code, _, err) = await RunAsync("wait", "--admin", $"http://{host.AddressOf("admin")}", "--timeout", "10s");
        Assert.True(code == ExitCodes.Ok, err);
    }

    /// <summary>The admin answers 503 three times, then 200: wait keeps polling and exits 0 on the fourth answer.</summary>
    [Fact]
    public async Task Wait_NotReadyThenReady_PollsUntilReady_Exit0()
    {
        await using var admin = new ScriptedAdmin(notReadyAnswers: 3);
        var (code, output, err) = await RunAsync("wait", "--admin", admin.EndPoint.ToString(), "--timeout", "20s");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains("after 4 attempt(s)", output, StringComparison.Ordinal);
        Assert.Equal(4, admin.Requests);
    }

    /// <summary>A draining sidecar answers 503 until it exits: wait gives up at its timeout, exit 1, saying what it got.</summary>
    [Fact]
    public async Task Wait_SidecarDraining_TimesOut_Exit1_WithTheLastAnswer()
    {
        await using var host = await StartHostAsync();
        host.Lifecycle.RequestStop(StopReason.Drain);
        var (code, _, err) = await RunAsync("wait", "--admin", host.AddressOf("admin")!.ToString()!, "--timeout", "3s");
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains($"error: the sidecar at http://{host.AddressOf("admin")}/ready is not ready within 3s", err, StringComparison.Ordinal);
        Assert.Contains("last: 503 not ready: draining", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wait_NothingListening_TimesOut_Exit1_SaysRefused()
    {
        var unused = new TcpListener(IPAddress.Loopback, 0);
        unused.Start();
        var address = (IPEndPoint)unused.LocalEndpoint;
        unused.Stop();
        var (code, _, err) = await RunAsync("wait", "--admin", address.ToString(), "--timeout", "500ms");
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains("not ready within 500ms", err, StringComparison.Ordinal);
        Assert.Contains("refused", err, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Wait_BadFlags_AllReported_Exit64()
    {
        var (code, _, err) = await RunAsync("wait", "--admin", "nowhere", "--timeout", "soon");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("error: --admin: \"nowhere\" is not an address with a port", err, StringComparison.Ordinal);
        Assert.Contains("error: --timeout: \"soon\" is not a duration", err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("127.0.0.1:15000", "http://127.0.0.1:15000/ready")]
    [InlineData("localhost:15020", "http://localhost:15020/ready")]
    [InlineData("http://127.0.0.1:15021", "http://127.0.0.1:15021/ready")]
    [InlineData("http://127.0.0.1:15021/healthz/ready", "http://127.0.0.1:15021/healthz/ready")]
    public void ParseAdmin_AddressOrUrl(string text, string expected)
    {
        Assert.Equal(expected, WaitCommand.ParseAdmin(text, out var error)!.ToString());
        Assert.Null(error);
    }

    /// <summary>An admin listener on a raw socket: 503 for the first few requests, then 200; one request per connection.</summary>
    private sealed class ScriptedAdmin : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly Task _serving;
        private readonly int _notReadyAnswers;
        private int _requests;

        public ScriptedAdmin(int notReadyAnswers)
        {
            _notReadyAnswers = notReadyAnswers;
            _listener.Start();
            _serving = ServeAsync();
        }

        public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

        public int Requests => Volatile.Read(ref _requests);

        private async Task ServeAsync()
        {
            try
            {
                while (true)
                {
                    using var client = await _listener.AcceptTcpClientAsync();
                    var stream = client.GetStream();
                    var head = new StringBuilder();
                    var buffer = new byte[1024];
                    while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
                        if (read == 0)
                        {
                            break;
                        }

                        head.Append(Encoding.ASCII.GetString(buffer, 0, read));
                    }

                    var ready = Interlocked.Increment(ref _requests) > _notReadyAnswers;
                    var body = ready ? "ready\n" : "not ready: listeners are still binding\n";
                    var status = ready ? "200 OK" : "503 Service Unavailable";
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _serving.WaitAsync(Timeout);
        }
    }
}

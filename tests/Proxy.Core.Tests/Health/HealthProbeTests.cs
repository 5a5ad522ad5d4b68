using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Configuration;
using Proxy.Core.Health;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Health;

/// <summary>One health check against real sockets on loopback: statuses, refusals, silence, garbage.</summary>
public sealed class HealthProbeTests
{
    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, null)]
    [InlineData("HTTP/1.0 204 No Content\r\n\r\n", true, null)]
    [InlineData("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", false, "answered status 503")]
    [InlineData("SSH-2.0-OpenSSH_9.2\r\n", false, "answered something that is not an HTTP/1.x status line")]
    [InlineData("", false, "closed without an answer")]
    public async Task Http_StatusLineDecides(string answer, bool healthy, string? detail)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var request = ServeOnceAsync(listener, answer);
        var probe = new HealthProbe(new HealthCheckConfig { Path = "/healthz", Timeout = TimeSpan.FromSeconds(5) }, "web");
        var result = await probe.CheckAsync((IPEndPoint)listener.LocalEndpoint, CancellationToken.None).WaitAsync(TestTimeouts.Short);
        Assert.Equal((healthy, detail), result);
        var head = await request.WaitAsync(TestTimeouts.Short);
        Assert.StartsWith("GET /healthz HTTP/1.1\r\nHost: web\r\n", head, StringComparison.Ordinal);
        Assert.Contains("Connection: close\r\n", head, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_ExpectedStatusesAndHost_FromTheConfig()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var request = ServeOnceAsync(listener, "HTTP/1.1 404 Not Found\r\n\r\n");
        var probe = new HealthProbe(new HealthCheckConfig { Host = "orders.internal", ExpectedStatuses = [new StatusRange(404, 404)] }, "web");
        Assert.Equal((true, (string?)null), await probe.CheckAsync((IPEndPoint)listener.LocalEndpoint, CancellationToken.None).WaitAsync(TestTimeouts.Short));
        Assert.Contains("Host: orders.internal\r\n", await request.WaitAsync(TestTimeouts.Short), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(HealthCheckType.Http)]
    [InlineData(HealthCheckType.Tcp)]
    public async Task Refused_Unhealthy(HealthCheckType type)
    {
        var probe = new HealthProbe(new HealthCheckConfig { Type = type }, "web");
        var result = await probe.CheckAsync(DeadEndPoint(), CancellationToken.None).WaitAsync(TestTimeouts.Short);
        Assert.Equal((false, "connection refused"), result);
    }

    [Fact]
    public async Task Tcp_ConnectIsEnough()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var probe = new HealthProbe(new HealthCheckConfig { Type = HealthCheckType.Tcp }, "web");
        Assert.Equal((true, (string?)null), await probe.CheckAsync((IPEndPoint)listener.LocalEndpoint, CancellationToken.None).WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public async Task Silent_TimesOut()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var probe = new HealthProbe(new HealthCheckConfig { Timeout = TimeSpan.FromMilliseconds(200) }, "web");
        var result = await probe.CheckAsync((IPEndPoint)listener.LocalEndpoint, CancellationToken.None).WaitAsync(TestTimeouts.Short);
        Assert.Equal((false, "no answer within the 200ms timeout"), result);
    }

    [Fact]
    public void TryParseStatus_OnlyHttp1StatusLines()
    {
        Assert.True(HealthProbe.TryParseStatus("HTTP/1.1 302 Found"u8, out var status));
        Assert.Equal(302, status);
        Assert.False(HealthProbe.TryParseStatus("HTTP/2 200 OK xxxx"u8, out _));
        Assert.False(HealthProbe.TryParseStatus("HTTP/1.1 2x0 OK"u8, out _));
        Assert.False(HealthProbe.TryParseStatus("HTTP/1.1 099 OK"u8, out _));
    }

    private static async Task<string> ServeOnceAsync(TcpListener listener, string answer)
    {
        using var socket = await listener.AcceptSocketAsync().WaitAsync(TestTimeouts.Short);
        var buffer = new byte[4096];
        var head = new StringBuilder();
        while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TestTimeouts.Short);
            if (read == 0)
            {
                break;
            }

            head.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        await socket.SendAsync(Encoding.ASCII.GetBytes(answer));
        socket.Shutdown(SocketShutdown.Send);
        return head.ToString();
    }

    private static IPEndPoint DeadEndPoint()
    {
        return Proxy.Testing.RefusingPort.Reserve();
    }
}

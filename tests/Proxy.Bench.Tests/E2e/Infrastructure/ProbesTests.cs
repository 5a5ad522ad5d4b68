using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class ProbesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task WaitForFirstByteAsync_BannerServer_ReturnsElapsedTime()
    {
        await using var banner = new BannerServer();
        await using var process = ChildProcess.Start("sleep", "/bin/sleep", ["60"]);

        var elapsed = await Probes.WaitForFirstByteAsync(banner.EndPoint, process.StartTimestamp, process, Timeout, CancellationToken.None).WaitAsync(Timeout);

        Assert.True(elapsed > TimeSpan.Zero && elapsed < Timeout);
    }

    [Fact]
    public async Task WaitForHttp200Async_503Then200_ReturnsAfterThe200()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        var served = 0;
        var server = Task.Run(async () =>
        {
            foreach (var status in new[] { "503 Service Unavailable", "503 Service Unavailable", "200 OK" })
            {
                using var connection = await listener.AcceptAsync();
                var buffer = new byte[1024];
                _ = await connection.ReceiveAsync(buffer, SocketFlags.None);
                await connection.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n"), SocketFlags.None);
                Interlocked.Increment(ref served);
            }
        });
        await using var process = ChildProcess.Start("sleep", "/bin/sleep", ["60"]);

        await Probes.WaitForHttp200Async((IPEndPoint)listener.LocalEndPoint!, "/ready", process.StartTimestamp, process, Timeout, CancellationToken.None).WaitAsync(Timeout);
        await server.WaitAsync(Timeout);

        Assert.Equal(3, Volatile.Read(ref served));
    }

    [Fact]
    public async Task WaitForHttp200Async_ProcessExits_FailsWithItsOutput()
    {
        var nobody = FreePorts.Next();
        await using var process = ChildProcess.Start("dying", "/bin/sh", ["-c", "echo cannot bind; exit 7"]);

        var error = await Assert.ThrowsAsync<E2eException>(
            () => Probes.WaitForHttp200Async(nobody, "/ready", process.StartTimestamp, process, Timeout, CancellationToken.None).WaitAsync(Timeout));

        Assert.Contains("dying exited (code 7)", error.Message, StringComparison.Ordinal);
        Assert.Contains("cannot bind", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FreePorts_Next_NeverRepeatsAPort()
    {
        var ports = Enumerable.Range(0, 50).Select(_ => FreePorts.Next().Port).ToList();

        Assert.Equal(ports.Count, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, 1, 65535));
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;

namespace Proxy.Bench.Tests.E2e.Peers;

/// <summary>The HTTP templates proxy real requests (where HAProxy / nginx are installed).</summary>
public sealed class HttpPeerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static TheoryData<string> Peers => new() { "haproxy", "nginx" };

    [Theory]
    [MemberData(nameof(Peers))]
    public async Task StartAsync_Http1_ProxiesKeepAliveRequestsToUpstream(string name)
    {
        if (ToolInstaller.Find(name) is not { } executable)
        {
            return;
        }

        var work = Directory.CreateTempSubdirectory("bench-test-peer-").FullName;
        await using var upstream = new HelloServer();
        IPeer peer = name == "haproxy" ? new HaproxyPeer(executable, "HAProxy", "auto", work) : new NginxPeer(executable, "nginx", work);
        try
        {
            await peer.StartAsync(new PeerConfig(ProxyProtocol.Http1, upstream.EndPoint), Timeout, CancellationToken.None).WaitAsync(Timeout);
            using var client = new HttpClient();
            for (var i = 0; i < 3; i++)
            {
                var body = await client.GetStringAsync(new Uri($"http://{peer.ListenEndPoint}/hello")).WaitAsync(Timeout);
                Assert.Equal("hello", body);
            }

            Assert.True(upstream.Requests >= 3, $"upstream saw {upstream.Requests} requests");
        }
        finally
        {
            await peer.DisposeAsync();
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Minimal keep-alive HTTP/1.1 server: every request head gets "hello".</summary>
    private sealed class HelloServer : IAsyncDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private int _requests;

        public HelloServer()
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(64);
            EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
            _loop = AcceptAsync();
        }

        public IPEndPoint EndPoint { get; }

        public int Requests => Volatile.Read(ref _requests);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Dispose();
            try
            {
                await _loop.WaitAsync(Timeout);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }

            _stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            while (true)
            {
                var connection = await _listener.AcceptAsync(_stop.Token);
                _ = ServeAsync(connection);
            }
        }

        private async Task ServeAsync(Socket connection)
        {
            using (connection)
            {
                var response = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello");
                var buffer = new byte[8192];
                var pending = new StringBuilder();
                try
                {
                    while (true)
                    {
                        var read = await connection.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                        if (read == 0)
                        {
                            return;
                        }

                        pending.Append(Encoding.ASCII.GetString(buffer, 0, read));
                        int end;
                        while ((end = pending.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal)) >= 0)
                        {
                            pending.Remove(0, end + 4);
                            Interlocked.Increment(ref _requests);
                            await connection.SendAsync(response, SocketFlags.None, _stop.Token);
                        }
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException)
                {
                }
            }
        }
    }
}

using System.Net;
using System.Net.Sockets;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// HTTP/2 upstream keepalive through a real sidecar: a service's <c>http2Keepalive</c> reaches the shared HTTP/2 pool,
/// and an upstream that goes silent after its SETTINGS (reads, never answers) loses its connection to the keepalive.
/// </summary>
public sealed class Http2KeepaliveTests : ReliabilityTestBase
{
    [Fact]
    public async Task SilentH2Upstream_EachRequestAnswered502_ConnectionReplaced_TimeoutsCountedForTheService()
    {
        var upstream = new SilentH2Upstream();
        Disposables.Add(upstream);
        var service = new ServiceConfig("web", [], [upstream.EndPoint])
        {
            UpstreamProtocol = UpstreamProtocol.Http2,
            Http2Keepalive = new Http2KeepaliveConfig { Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(300) },
        };
        var host = await EdgeAsync(service);
        using var http = LimitsSidecar.Client();

        for (var i = 0; i < 2; i++)
        {
            using var response = await http.GetAsync(LimitsSidecar.Url(host, $"/{i}")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            Assert.Equal("upstream_reset", response.Headers.GetValues("x-proxy-error").Single());
            Assert.Contains("keepalive PING", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal(2, upstream.Accepted);
        await LimitsSidecar.WaitForMetricAsync(host, "proxy_http2_keepalive_timeouts_total{service=\"web\"} 2");
    }

    /// <summary>Accepts h2c connections, reads the preface, sends an empty SETTINGS, then reads and discards everything.</summary>
    private sealed class SilentH2Upstream : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly List<TcpClient> _clients = [];
        private readonly Task _accepting;
        private int _accepted;

        public SilentH2Upstream()
        {
            _listener.Start();
            EndPoint = (IPEndPoint)_listener.LocalEndpoint;
            _accepting = AcceptLoopAsync();
        }

        public IPEndPoint EndPoint { get; }

        public int Accepted => Volatile.Read(ref _accepted);

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    lock (_clients)
                    {
                        _clients.Add(client);
                    }

                    Interlocked.Increment(ref _accepted);
                    _ = ServeAsync(client.GetStream());
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task ServeAsync(NetworkStream stream)
        {
            try
            {
                var preface = new byte[24];
                await stream.ReadExactlyAsync(preface, _stop.Token);
                await stream.WriteAsync(new byte[] { 0, 0, 0, 4, 0, 0, 0, 0, 0 }, _stop.Token);
                var sink = new byte[4096];
                while (await stream.ReadAsync(sink, _stop.Token) > 0)
                {
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            lock (_clients)
            {
                foreach (var c in _clients)
                {
                    c.Dispose();
                }
            }

            _stop.Dispose();
        }
    }
}

using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Sidecar.Demo;

namespace Proxy.Sidecar.Tests.Demo;

/// <summary>The load generator straight against one demo version (no sidecar).</summary>
public sealed class DemoClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private DemoUpstreams? _upstreams;

    public async Task InitializeAsync()
    {
        _upstreams = await DemoUpstreams.StartAsync(NullLoggerFactory.Instance, CancellationToken.None).WaitAsync(Timeout);

        // Warm both versions and the HTTP stack: on a loaded CI machine a cold first request can take a second,
        // longer than the short runs below.
        using var warm = new HttpClient { Timeout = Timeout };
        (await warm.GetAsync(new Uri($"http://{_upstreams.V1}/")).WaitAsync(Timeout)).Dispose();
        (await warm.GetAsync(new Uri($"http://{_upstreams.V2}/")).WaitAsync(Timeout)).Dispose();
    }

    public async Task DisposeAsync()
    {
        if (_upstreams is not null)
        {
            await _upstreams.DisposeAsync().AsTask().WaitAsync(Timeout);
        }
    }

    private static async Task<DemoSnapshot> RunAsync(Uri target, DemoOptions options, TimeSpan duration)
    {
        using var client = new DemoClient(target, options, TimeProvider.System);
        var stats = new DemoStats(TimeProvider.System);
        using var stop = new CancellationTokenSource(duration);
        await client.RunAsync(stats, stop.Token).WaitAsync(Timeout);
        return stats.Snapshot();
    }

    [Fact]
    public async Task RunAsync_Rate_SendsNoMoreThanScheduled()
    {
        var started = Stopwatch.GetTimestamp();
        var snapshot = await RunAsync(new Uri($"http://{_upstreams!.V1}/"), new DemoOptions { RequestsPerSecond = 40, Concurrency = 4 }, TimeSpan.FromSeconds(2));
        var elapsed = Stopwatch.GetElapsedTime(started);

        var v1 = snapshot[DemoTarget.V1];
        Assert.True(v1.Requests > 0);
        Assert.True(v1.Requests <= (40 * elapsed.TotalSeconds) + 1, $"{v1.Requests} requests in {elapsed}");
        Assert.Equal(v1.Requests, v1.Succeeded);
        Assert.Equal(0, snapshot[DemoTarget.V2].Requests + snapshot[DemoTarget.Failed].Requests + snapshot[DemoTarget.Other].Requests);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    public async Task RunAsync_HeaderShare_AllOrNone(double share)
    {
        var snapshot = await RunAsync(
            new Uri($"http://{_upstreams!.V2}/"), new DemoOptions { RequestsPerSecond = 0, Concurrency = 2, HeaderShare = share }, TimeSpan.FromSeconds(1));

        var v2 = snapshot[DemoTarget.V2];
        Assert.True(v2.Requests > 0);
        Assert.Equal(share == 1 ? v2.Requests : 0, v2.HeaderRequests);
        Assert.Equal(share == 1 ? 0 : v2.Requests, v2.SplitRequests);
    }

    [Fact]
    public async Task RunAsync_NothingListening_CountedAsFailed()
    {
        // A port that was just free: bind, read it back, release.
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
        }

        var snapshot = await RunAsync(new Uri($"http://127.0.0.1:{port}/"), new DemoOptions { RequestsPerSecond = 20, Concurrency = 1 }, TimeSpan.FromMilliseconds(300));

        Assert.True(snapshot[DemoTarget.Failed].Requests > 0);
        Assert.Equal(0, snapshot[DemoTarget.Failed].Succeeded);
    }
}

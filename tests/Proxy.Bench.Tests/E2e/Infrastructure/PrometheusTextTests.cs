using System.Net;
using System.Net.Sockets;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class PrometheusTextTests
{
    [Fact]
    public void TryGetValue_CounterWithTotalSuffix_ReadsIt()
    {
        var text = """
            # HELP proxy_process_allocated_bytes_total Bytes allocated.
            # TYPE proxy_process_allocated_bytes_total counter
            proxy_process_allocated_bytes_total 123456789
            proxy_tcp_connections_opened_total{listener="bench",service="backend"} 5
            """;

        Assert.Equal(123456789d, PrometheusText.TryGetValue(text, PrometheusText.AllocatedBytes));
    }

    [Fact]
    public void TryGetValue_LabelledSeries_AreSummed()
    {
        var text = "proxy_tcp_connections_opened_total{listener=\"a\"} 5\nproxy_tcp_connections_opened_total{listener=\"b\"} 7 1700000000\n";

        Assert.Equal(12d, PrometheusText.TryGetValue(text, "proxy_tcp_connections_opened"));
    }

    [Fact]
    public void TryGetValue_GaugeWithoutSuffixAndExponent_ReadsIt()
    {
        Assert.Equal(1.5e9, PrometheusText.TryGetValue("proxy_process_allocated_bytes 1.5E+09\r\n", PrometheusText.AllocatedBytes));
    }

    [Fact]
    public void TryGetValue_OnlyMetricsSharingThePrefix_ReturnsNull()
    {
        var text = """
            # HELP proxy_process_allocated_bytes_total Bytes allocated.
            # TYPE proxy_process_allocated_bytes_total counter
            proxy_process_allocated_bytes_max 3
            proxy_process_allocated_bytes_totally 4
            """;

        Assert.Null(PrometheusText.TryGetValue(text, PrometheusText.AllocatedBytes));
    }

    [Fact]
    public async Task FetchAsync_NothingListening_ThrowsE2eExceptionNamingTheEndpoint()
    {
        // Bound but not listening: connecting is refused.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var endPoint = (IPEndPoint)socket.LocalEndPoint!;

        var error = await Assert.ThrowsAsync<E2eException>(() => PrometheusText.FetchAsync(endPoint, "/metrics", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20)));

        Assert.Contains($"GET {endPoint}/metrics", error.Message, StringComparison.Ordinal);
    }
}

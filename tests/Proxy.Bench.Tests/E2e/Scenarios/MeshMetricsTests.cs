using Proxy.Bench.E2e.Scenarios;

namespace Proxy.Bench.Tests.E2e.Scenarios;

public sealed class MeshMetricsTests
{
    private const string Hop1 = "spiffe://cluster.local/ns/bench/sa/hop1";

    private const string Hop2Metrics = """
        # HELP proxy_mesh_inbound_connections_total Connections on mesh-aware inbound ports.
        # TYPE proxy_mesh_inbound_connections_total counter
        proxy_mesh_inbound_connections_total{listener="in",mode="strict",result="mtls"} 3
        proxy_mesh_inbound_connections_total{listener="in",mode="strict",result="refused"} 1
        proxy_mesh_inbound_connections_total_other{listener="in",mode="strict",result="mtls"} 100
        proxy_tls_peer_connections_total{listener="in",peer="spiffe://cluster.local/ns/bench/sa/hop1",transport="mtls"} 2
        proxy_tls_peer_connections_total{listener="in",peer="other",transport="mtls"} 1
        """;

    private const string Hop1Metrics = """
        proxy_tls_handshakes_total{listener="",service="hop2",role="client",result="ok"} 4
        proxy_tls_handshakes_total{listener="",service="hop2",role="client",result="error"} 1
        proxy_tls_handshakes_total{listener="",service="other",role="client",result="ok"} 50
        """;

    [Fact]
    public void Sum_LabelFilters_AddOnlyMatchingSeriesOfThatExactMetric()
    {
        Assert.Equal(3, MeshMetrics.Sum(Hop2Metrics, MeshMetrics.InboundConnections, "result=\"mtls\""));
        Assert.Equal(4, MeshMetrics.Sum(Hop2Metrics, MeshMetrics.InboundConnections));
        Assert.Equal(0, MeshMetrics.Sum(Hop2Metrics, MeshMetrics.InboundConnections, "result=\"plaintext\""));
        Assert.Equal(2, MeshMetrics.Sum(Hop2Metrics, MeshMetrics.PeerConnections, $"peer=\"{Hop1}\"", "transport=\"mtls\""));
        Assert.Equal(0, MeshMetrics.Sum(string.Empty, MeshMetrics.Handshakes));
    }

    [Fact]
    public void Describe_CountsFromBothHops_NamesConnectionsIdentityAndFailedHandshakes()
    {
        var note = MeshMetrics.Describe("sidecar-mtls", Hop2Metrics, Hop1Metrics, Hop1);

        Assert.Equal(
            "sidecar-mtls: over the whole run hop 2 accepted 3 mesh mTLS connection(s) (2 verified as spiffe://cluster.local/ns/bench/sa/hop1), 0 plaintext, 1 refused; " +
            "hop 1 completed 4 client handshake(s) to service hop2 and failed 1 (admin /metrics: proxy_mesh_inbound_connections_total, proxy_tls_peer_connections_total, proxy_tls_handshakes_total).",
            note);
    }
}

using Proxy.Core.Metrics;

namespace Proxy.Core.Tests.Metrics;

/// <summary>The "peer" label of proxy_tls_peer_connections_total stays bounded however many identities connect.</summary>
public sealed class PeerLabelTests
{
    [Fact]
    public void PeerLabel_NoIdentity_Empty()
    {
        using var metrics = new ProxyMetrics();
        Assert.Equal("", metrics.PeerLabel(null));
    }

    [Fact]
    public void PeerLabel_PastTheCap_NewIdentitiesAreOtherAndKnownOnesKeepTheirOwn()
    {
        using var metrics = new ProxyMetrics();
        for (var i = 0; i < ProxyMetrics.MaxPeerLabels; i++)
        {
            Assert.Equal($"spiffe://td/ns/n/sa/{i}", metrics.PeerLabel($"spiffe://td/ns/n/sa/{i}"));
        }

        Assert.Equal("other", metrics.PeerLabel("spiffe://td/ns/n/sa/one-too-many"));
        Assert.Equal("spiffe://td/ns/n/sa/7", metrics.PeerLabel("spiffe://td/ns/n/sa/7"));
    }
}

using System.Net;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;

namespace Proxy.Core.Tests.Transport;

public sealed class ConnectionFeaturesTests
{
    private sealed class Heartbeat : IConnectionHeartbeatFeature
    {
        public void OnHeartbeat(Action<object> action, object state)
        {
        }
    }

    [Fact]
    public async Task Features_OwnAddedReplacedAndRemoved_BehaveLikeAFeatureCollection()
    {
        using var factory = new SocketTransportFactory();
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var client = await TestSockets.ConnectAsync((IPEndPoint)listener.EndPoint);
        await using var connection = (SocketConnection)(await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
        var features = connection.Features;

        // The connection's own features.
        Assert.Same(connection, features.Get<IConnectionIdFeature>());
        Assert.Same(connection, features.Get<IConnectionTransportFeature>());
        Assert.Same(connection, features.Get<IConnectionSocketFeature>());
        Assert.Same(connection, features.Get<ITakeOverSocketFeature>());
        Assert.Null(features.Get<IConnectionHeartbeatFeature>());

        // Added by someone else (Kestrel adds several), then replaced, then removed; each change is a new revision.
        var revision = features.Revision;
        var first = new Heartbeat();
        features.Set<IConnectionHeartbeatFeature>(first);
        Assert.Same(first, features.Get<IConnectionHeartbeatFeature>());
        Assert.True(features.Revision > revision);
        var second = new Heartbeat();
        features[typeof(IConnectionHeartbeatFeature)] = second;
        Assert.Same(second, features.Get<IConnectionHeartbeatFeature>());
        features.Set<IConnectionHeartbeatFeature>(null);
        Assert.Null(features.Get<IConnectionHeartbeatFeature>());

        // One of ours replaced (a TLS stage replaces the transport feature): the replacement wins, and appears once.
        var replacement = new ReplacementTransport();
        features.Set<IConnectionTransportFeature>(replacement);
        Assert.Same(replacement, features.Get<IConnectionTransportFeature>());
        Assert.Single(features, p => p.Key == typeof(IConnectionTransportFeature));
        Assert.Contains(features, p => p.Key == typeof(IConnectionIdFeature) && ReferenceEquals(p.Value, connection));
        features.Set<IConnectionTransportFeature>(null);
        Assert.Same(connection, features.Get<IConnectionTransportFeature>());
    }

    private sealed class ReplacementTransport : IConnectionTransportFeature
    {
        public System.IO.Pipelines.IDuplexPipe Transport { get; set; } = null!;
    }
}

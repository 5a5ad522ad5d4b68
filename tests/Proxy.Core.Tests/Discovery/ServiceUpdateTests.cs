using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;

namespace Proxy.Core.Tests.Discovery;

/// <summary>Endpoint sets that change at runtime: <see cref="Service.UpdateEndpoints"/> and <see cref="ServiceRegistry"/>'s carry-over.</summary>
public sealed class ServiceUpdateTests
{
    private static IPEndPoint Ep(int last, int port = 80) => new(IPAddress.Parse($"10.0.0.{last}"), port);

    private static WeightedAddress W(int last, int weight = 1) => new(new UpstreamAddress(Ep(last)), weight);

    [Fact]
    public void UpdateEndpoints_KeepsObjectsOfUnchangedAddresses_ReturnsRemoved()
    {
        var service = new Service("web", BalancerKind.LeastRequest, [W(1), W(2), W(3)]);
        var before = service.Endpoints.ToArray();
        var token = before[0].OnRequestStart();

        var removed = service.UpdateEndpoints([W(1), W(3, 2), W(4)]);

        var after = service.Endpoints.ToArray();
        Assert.Same(before[0], after[0]);
        Assert.Equal(1, after[0].InFlight);
        Assert.NotSame(before[2], after[1]);
        Assert.Equal(2, after[1].Weight);
        Assert.Equal([Ep(2), Ep(3)], removed.Select(static e => e.Address.EndPoint).Order(Comparer<IPEndPoint>.Create(static (a, b) => string.CompareOrdinal(a.ToString(), b.ToString()))));
        before[0].OnRequestEnd(token, success: true);
        Assert.Equal(0, after[0].InFlight);
    }

    [Fact]
    public void UpdateEndpoints_Unchanged_KeepsTheBalancer_RepeatedAddressCountsOnce()
    {
        var service = new Service("web", BalancerKind.RoundRobin, [W(1), W(2)]);
        var balancer = service.Balancer;
        Assert.Empty(service.UpdateEndpoints([W(2), W(1), W(2, 5)]));
        Assert.Same(balancer, service.Balancer);
        Assert.Equal(2, service.EndpointCount);
    }

    [Fact]
    public void Empty_TryPickFails_ReasonSaid_AndBalancerThrows()
    {
        var service = new Service("web", BalancerKind.RoundRobin, [W(1)]);
        Assert.True(service.TryPick(BalancerContext.None, out _));

        var removed = service.UpdateEndpoints([], "DNS: web.test does not exist (NXDOMAIN)");

        Assert.Single(removed);
        Assert.False(service.TryPick(BalancerContext.None, out var none));
        Assert.Null(none);
        Assert.False(service.TryPick(new IPEndPoint(IPAddress.Loopback, 1), out _));
        Assert.Equal(0, service.EndpointCount);
        Assert.Equal("service web has no endpoints (DNS: web.test does not exist (NXDOMAIN))", service.DescribeNoEndpoint());
        Assert.Throws<InvalidOperationException>(() => service.Balancer);

        service.UpdateEndpoints([W(2)]);
        Assert.True(service.TryPick(BalancerContext.None, out var back));
        Assert.Equal(Ep(2), back.Address.EndPoint);
        Assert.Null(service.NoEndpointReason);
    }

    [Fact]
    public void Subsets_FollowTheServicesUpdates_WithTheSameObjects()
    {
        var config = new ServiceConfig("web", [], [Ep(1), Ep(2)])
        {
            Subsets = [new SubsetConfig("v2", [Ep(2), Ep(3)])],
            Dns = new ServiceDnsConfig("web.test") { Port = 80 },
        };
        var registry = new ServiceRegistry([config]);
        var web = registry.FindByName("web")!;
        var v2 = web.FindSubset("v2")!;
        Assert.Equal([Ep(2)], v2.Endpoints.ToArray().Select(static e => e.Address.EndPoint));
        Assert.Same(web.Endpoints[1], v2.Endpoints[0]);

        registry.UpdateEndpoints(web, [W(1), W(2), W(3)]);
        Assert.Equal(2, v2.EndpointCount);
        Assert.Same(web.Endpoints[2], v2.Endpoints[1]);

        registry.UpdateEndpoints(web, [W(1)]);
        Assert.False(v2.TryPick(BalancerContext.None, out _));
        Assert.Contains("subset v2 of service web has no endpoints", v2.DescribeNoEndpoint(), StringComparison.Ordinal);
        Assert.True(web.TryPick(BalancerContext.None, out _));
    }

    [Fact]
    public void Registry_RetiresOnlyAddressesNoServiceHas()
    {
        var registry = new ServiceRegistry([new ServiceConfig("a", [], [Ep(1), Ep(2)]), new ServiceConfig("b", [], [Ep(2)])]);
        var retired = new List<UpstreamAddress>();
        registry.EndpointRetired += retired.Add;

        registry.UpdateEndpoints(registry.FindByName("a")!, [W(3)]);

        Assert.Equal([new UpstreamAddress(Ep(1))], retired);
        Assert.True(registry.Contains(new UpstreamAddress(Ep(2))));
    }

    [Fact]
    public void Registry_FromPrevious_KeepsEndpointObjectsAndDnsEndpoints()
    {
        var dns = new ServiceDnsConfig("web.test") { Port = 80 };
        var first = new ServiceRegistry([new ServiceConfig("web", [], [Ep(1)]) { Dns = dns }, new ServiceConfig("db", [], [Ep(5), Ep(6)])]);
        var web = first.FindByName("web")!;
        first.UpdateEndpoints(web, [W(1), W(2)]);
        var fromDns = web.Endpoints[1];
        var db5 = first.FindByName("db")!.Endpoints[0];

        var second = new ServiceRegistry([new ServiceConfig("web", [], [Ep(1)]) { Dns = dns }, new ServiceConfig("db", [], [Ep(5)])], previous: first);

        Assert.Same(fromDns, second.FindByName("web")!.Endpoints[1]);
        Assert.Same(db5, second.FindByName("db")!.Endpoints[0]);
        Assert.Equal([new UpstreamAddress(Ep(6))], second.RetiredSince(first));
    }

    [Fact]
    public void Registry_DnsServiceWithoutEndpoints_StartsEmptySayingWhy()
    {
        var registry = new ServiceRegistry([new ServiceConfig("web", [], []) { Dns = new ServiceDnsConfig("web.test") { Port = 80 } }]);
        var web = registry.FindByName("web")!;
        Assert.Equal(0, web.EndpointCount);
        Assert.Equal("service web has no endpoints (no DNS answer yet)", web.DescribeNoEndpoint());
    }
}

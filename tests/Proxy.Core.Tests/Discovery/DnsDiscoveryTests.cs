using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Discovery;

/// <summary><see cref="DnsDiscovery"/> over a scripted resolver and a manual clock: refresh by clamped TTL, failure handling.</summary>
public sealed class DnsDiscoveryTests
{
    private static readonly ServiceDnsConfig Dns = new("web.test") { Port = 80, MinRefresh = TimeSpan.FromSeconds(5), MaxRefresh = TimeSpan.FromSeconds(60) };

    private static WeightedAddress W(int last) => new(new UpstreamAddress(new IPEndPoint(IPAddress.Parse($"10.0.0.{last}"), 80)));

    private static DnsAnswer Ok(TimeSpan ttl, params int[] lasts)
        => new(DnsLookupResult.Success, lasts.Select(W).ToArray(), ttl, $"web.test gave {lasts.Length}");

    [Fact]
    public async Task Lookups_FollowTheClampedTtl_FailureKeepsTheSet_NxDomainEmptiesIt()
    {
        var time = new ManualTimeProvider();
        var resolver = new ScriptedResolver();
        var registry = new ServiceRegistry([new ServiceConfig("web", [], [new IPEndPoint(IPAddress.Parse("10.0.0.9"), 80)]) { Dns = Dns }]);
        var web = registry.FindByName("web")!;
        using var meter = new Meter("test.dns");
        var metrics = new DiscoveryMetrics(meter);
        var lookups = new ConcurrentDictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter == meter)
            {
                l.EnableMeasurementEvents(i);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, value, tags, _) =>
        {
            if (i.Name == "proxy_dns_lookups")
            {
                foreach (var t in tags)
                {
                    if (t.Key == "result")
                    {
                        lookups.AddOrUpdate((string)t.Value!, value, (_, v) => v + value);
                    }
                }
            }
        });
        listener.Start();

        await using var discovery = new DnsDiscovery(registry, resolver, metrics, time: time);
        resolver.Next(Ok(TimeSpan.FromSeconds(1), 1, 2));
        await discovery.StartAsync(TimeSpan.FromSeconds(10)).WaitAsync(TestTimeouts.Short);
        Assert.Equal(3, web.EndpointCount);  // the static 10.0.0.9 and the two from DNS
        Assert.Equal(1, resolver.Calls);

        // TTL 1 s < minRefresh 5 s: nothing before 5 s.
        resolver.Next(new DnsAnswer(DnsLookupResult.Timeout, [], TimeSpan.Zero, "no answer"));
        await WaitAsync(() => time.PendingTimers == 1);
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal(1, resolver.Calls);
        time.Advance(TimeSpan.FromSeconds(1));
        await resolver.WaitForCallsAsync(2);
        await WaitAsync(() => lookups.GetValueOrDefault("timeout") == 1);
        Assert.Equal(3, web.EndpointCount);

        // After a failure: minRefresh again. A TTL of 120 s is capped by maxRefresh 60 s.
        resolver.Next(Ok(TimeSpan.FromSeconds(120), 2, 3));
        await WaitAsync(() => time.PendingTimers == 1);
        time.Advance(TimeSpan.FromSeconds(5));
        await resolver.WaitForCallsAsync(3);
        await WaitAsync(() => web.EndpointCount == 3 && web.Endpoints.ToArray().Any(static e => e.Address == W(3).Address));
        resolver.Next(new DnsAnswer(DnsLookupResult.NxDomain, [], TimeSpan.Zero, "web.test does not exist (NXDOMAIN)"));
        await WaitAsync(() => time.PendingTimers == 1);
        time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(3, resolver.Calls);
        time.Advance(TimeSpan.FromSeconds(1));
        await resolver.WaitForCallsAsync(4);

        // NXDOMAIN: DNS says there are none; the static endpoint stays.
        await WaitAsync(() => web.EndpointCount == 1);
        Assert.Equal(IPAddress.Parse("10.0.0.9"), web.Endpoints[0].Address.EndPoint.Address);
        await WaitAsync(() => lookups.GetValueOrDefault("nxdomain") == 1);
        Assert.Equal(2, lookups.GetValueOrDefault("success"));
    }

    [Fact]
    public async Task FirstLookupFails_EmptyServiceSaysWhy()
    {
        var resolver = new ScriptedResolver();
        var registry = new ServiceRegistry([new ServiceConfig("web", [], []) { Dns = Dns }]);
        await using var discovery = new DnsDiscovery(registry, resolver, time: new ManualTimeProvider());
        resolver.Next(new DnsAnswer(DnsLookupResult.Error, [], TimeSpan.Zero, "the A query for web.test failed: Refused"));
        await discovery.StartAsync(TimeSpan.FromSeconds(10)).WaitAsync(TestTimeouts.Short);
        var web = registry.FindByName("web")!;
        Assert.False(web.TryPick(BalancerContext.None, out _));
        Assert.Equal("service web has no endpoints (DNS lookup failed: the A query for web.test failed: Refused)", web.DescribeNoEndpoint());
    }

    private static async Task WaitAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestTimeouts.Short;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(5);
        }
    }

    /// <summary>Answers each lookup with the answer queued last (the same again when none is queued).</summary>
    private sealed class ScriptedResolver : IDnsResolver
    {
        private DnsAnswer _answer = new(DnsLookupResult.Error, [], TimeSpan.Zero, "nothing scripted");
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public void Next(DnsAnswer answer) => Volatile.Write(ref _answer, answer);

        public Task<DnsAnswer> ResolveAsync(ServiceDnsConfig dns, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return Task.FromResult(Volatile.Read(ref _answer));
        }

        public async Task WaitForCallsAsync(int n) => await WaitAsync(() => Calls >= n);
    }
}

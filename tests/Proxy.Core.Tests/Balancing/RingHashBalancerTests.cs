using System.Buffers.Binary;
using System.Net;
using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

public sealed class RingHashBalancerTests
{
    private const int Keys = 10_000;

    private static BalancerContext Key(int i)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, i);
        return BalancerContext.WithKey(bytes);
    }

    private static Endpoint[] MapKeys(RingHashBalancer balancer)
    {
        var map = new Endpoint[Keys];
        for (var i = 0; i < Keys; i++)
        {
            var context = Key(i);
            map[i] = balancer.Pick(in context);
        }

        return map;
    }

    [Fact]
    public void Pick_SameKey_SameEndpointEveryTime()
    {
        var balancer = new RingHashBalancer(EndpointSet.Create(Endpoints.Addresses(5)));

        var first = MapKeys(balancer);
        var second = MapKeys(balancer);

        Assert.Equal(first, second);
    }

    [Fact]
    public void Pick_EndpointsInAnotherOrder_SameMapping()
    {
        var addresses = Endpoints.Addresses(6);
        var reversed = addresses.Reverse().ToArray();

        var a = MapKeys(new RingHashBalancer(EndpointSet.Create(addresses)));
        var b = MapKeys(new RingHashBalancer(EndpointSet.Create(reversed)));

        for (var i = 0; i < Keys; i++)
        {
            Assert.Equal(a[i].Address, b[i].Address);
        }
    }

    [Fact]
    public void Pick_OneOfTenRemoved_OnlyItsKeysMove_AboutATenth()
    {
        var addresses = Endpoints.Addresses(10);
        var before = MapKeys(new RingHashBalancer(EndpointSet.Create(addresses)));
        var removed = addresses[3].Address;
        var after = MapKeys(new RingHashBalancer(EndpointSet.Create(addresses.Where(a => a.Address != removed).ToArray())));

        var moved = 0;
        for (var i = 0; i < Keys; i++)
        {
            if (before[i].Address != after[i].Address)
            {
                moved++;
                Assert.Equal(removed, before[i].Address);
            }
            else
            {
                Assert.NotEqual(removed, before[i].Address);
            }
        }

        Assert.InRange(moved, Keys * 7 / 100, Keys * 13 / 100);
    }

    [Fact]
    public void Pick_EqualWeights_KeysSpreadEvenly()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(10));
        var balancer = new RingHashBalancer(set);
        var counts = new int[10];
        foreach (var e in MapKeys(balancer))
        {
            counts[Endpoints.IndexOf(set, e)]++;
        }

        // 10 * 100 < 1024, so the nodes per weight double to 200.
        Assert.Equal(2000, balancer.RingSize);
        foreach (var c in counts)
        {
            Assert.InRange(c, Keys * 7 / 100, Keys * 13 / 100);
        }
    }

    [Fact]
    public void Pick_Weights_KeysInProportion()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(3, 1, 2, 3));
        var balancer = new RingHashBalancer(set);
        var counts = new int[3];
        foreach (var e in MapKeys(balancer))
        {
            counts[Endpoints.IndexOf(set, e)]++;
        }

        // Total weight 6 and a minimum ring of 1024: 100 nodes per weight doubled to 200.
        Assert.Equal(200 * 6, balancer.RingSize);
        Assert.InRange(counts[0], Keys * 12 / 100, Keys * 21 / 100);
        Assert.InRange(counts[1], Keys * 28 / 100, Keys * 39 / 100);
        Assert.InRange(counts[2], Keys * 44 / 100, Keys * 56 / 100);
    }

    [Fact]
    public void Constructor_LargeTotalWeight_RingCappedAtMaxSize()
    {
        var options = new BalancerOptions { MaxRingSize = 2000 };
        var balancer = new RingHashBalancer(EndpointSet.Create(Endpoints.Addresses(4, 100, 100, 100, 100), options), options);

        Assert.Equal(2000, balancer.RingSize);
    }

    [Fact]
    public void Pick_NoKey_RandomPointOfTheRing()
    {
        var set = EndpointSet.Create(Endpoints.Addresses(3));
        var balancer = new RingHashBalancer(set, new BalancerOptions { Random = new SeededRandom(3) });
        var counts = Endpoints.Counts(balancer, 3000);

        foreach (var c in counts)
        {
            Assert.InRange(c, 700, 1300);
        }
    }

    [Fact]
    public void WithSourceAddress_MappedIpv4_HashesLikeIpv4_PortIgnored()
    {
        var balancer = new RingHashBalancer(EndpointSet.Create(Endpoints.Addresses(8)));
        var v4 = BalancerContext.WithSourceAddress(IPAddress.Parse("192.0.2.44"));
        var mapped = BalancerContext.WithSourceAddress(IPAddress.Parse("::ffff:192.0.2.44"));
        var other = BalancerContext.WithSourceAddress(IPAddress.Parse("2001:db8::44"));

        Assert.Equal(v4.Hash, mapped.Hash);
        Assert.NotEqual(v4.Hash, other.Hash);
        Assert.Same(balancer.Pick(in v4), balancer.Pick(in mapped));
    }

    [Fact]
    public void KeyHash_IsStableAcrossRuns()
    {
        // A changed hash would remap every client of every ring-hash service on upgrade. Expected values
        // computed independently: FNV-1a 64 ("a" -> 0xaf63dc4c8601ec8c) then MurmurHash3 fmix64.
        Assert.Equal(0xefd01f60ba992926UL, KeyHash.Hash([]));
        Assert.Equal(0x82a2a958a9bece5bUL, KeyHash.Hash("a"u8));
        Assert.Equal(0x6bee40744bf9f709UL, BalancerContext.WithSourceAddress(IPAddress.Parse("192.0.2.44")).Hash);
    }

    [Fact]
    public void Pick_SingleEndpoint_AlwaysIt()
    {
        var balancer = new RingHashBalancer(EndpointSet.Create(Endpoints.Addresses(1)));
        var context = Key(42);

        Assert.Same(balancer.Endpoints[0], balancer.Pick(in context));
    }
}

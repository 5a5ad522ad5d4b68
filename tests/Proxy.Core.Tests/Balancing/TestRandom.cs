using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;

namespace Proxy.Core.Tests.Balancing;

/// <summary>Returns the scripted values in order and fails the test if one is out of the asked range or the script runs out.</summary>
internal sealed class ScriptedRandom(params int[] values) : IRandomSource
{
    private int _next;

    public int Next(int maxExclusive)
    {
        Assert.True(_next < values.Length, "the scripted random source ran out of values");
        var v = values[_next++];
        Assert.InRange(v, 0, maxExclusive - 1);
        return v;
    }

    public int Remaining => values.Length - _next;
}

/// <summary>A seeded, single-threaded random source: the same sequence every run.</summary>
internal sealed class SeededRandom(int seed) : IRandomSource
{
    private readonly Random _random = new(seed);

    public int Next(int maxExclusive) => _random.Next(maxExclusive);
}

internal static class Endpoints
{
    /// <summary>10.0.0.1:8080, 10.0.0.2:8080, ... with the given weights (all 1 when none are given).</summary>
    public static WeightedAddress[] Addresses(int count, params int[] weights)
    {
        var list = new WeightedAddress[count];
        for (var i = 0; i < count; i++)
        {
            list[i] = new WeightedAddress(Address(i), weights.Length == 0 ? 1 : weights[i]);
        }

        return list;
    }

    public static UpstreamAddress Address(int i) => new(new IPEndPoint(new IPAddress([10, 0, (byte)(i >> 8), (byte)(i + 1)]), 8080));

    /// <summary>Index of the picked endpoint in the set.</summary>
    public static int IndexOf(EndpointSet set, Endpoint endpoint)
    {
        for (var i = 0; i < set.Count; i++)
        {
            if (ReferenceEquals(set[i], endpoint))
            {
                return i;
            }
        }

        throw new InvalidOperationException($"{endpoint} is not in the set");
    }

    public static int[] Picks(ILoadBalancer balancer, int count)
    {
        var picks = new int[count];
        for (var i = 0; i < count; i++)
        {
            picks[i] = IndexOf(balancer.Endpoints, balancer.Pick(BalancerContext.None));
        }

        return picks;
    }

    public static int[] Counts(ILoadBalancer balancer, int picks)
    {
        var counts = new int[balancer.Endpoints.Count];
        for (var i = 0; i < picks; i++)
        {
            counts[IndexOf(balancer.Endpoints, balancer.Pick(BalancerContext.None))]++;
        }

        return counts;
    }
}

using Proxy.Core.Addresses;

namespace Proxy.Core.Balancing;

/// <summary>An endpoint address with its weight, the input to <see cref="EndpointSet.Create"/>.</summary>
public readonly record struct WeightedAddress(UpstreamAddress Address, int Weight = 1);

/// <summary>
/// An immutable snapshot of a service's endpoints and their cumulative weights. Balancers are built
/// over one snapshot; a change of endpoints builds a new snapshot (and balancer) and swaps it in, so a
/// pick always sees one consistent list.
/// </summary>
public sealed class EndpointSet
{
    private readonly Endpoint[] _endpoints;

    // _cumulative[i] = sum of the weights of endpoints 0..i; for weighted sampling by binary search.
    private readonly long[] _cumulative;

    private EndpointSet()
    {
        _endpoints = [];
        _cumulative = [];
        WeightsEqual = true;
    }

    /// <summary>
    /// No endpoints: what a service without endpoints (a DNS name with no records) shows to readers of its current set
    /// (health checks, outlier detection, /clusters). Never given to a balancer.
    /// </summary>
    public static EndpointSet Empty { get; } = new();

    public EndpointSet(IReadOnlyList<Endpoint> endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentOutOfRangeException.ThrowIfZero(endpoints.Count, nameof(endpoints));
        _endpoints = new Endpoint[endpoints.Count];
        _cumulative = new long[endpoints.Count];
        long total = 0;
        var equal = true;
        for (var i = 0; i < _endpoints.Length; i++)
        {
            var e = endpoints[i] ?? throw new ArgumentException("an endpoint is null", nameof(endpoints));
            _endpoints[i] = e;
            total += e.Weight;
            _cumulative[i] = total;
            equal &= e.Weight == _endpoints[0].Weight;
        }

        if (total > int.MaxValue)
        {
            throw new ArgumentException($"the total weight {total} exceeds {int.MaxValue}", nameof(endpoints));
        }

        TotalWeight = (int)total;
        WeightsEqual = equal;
    }

    /// <summary>Creates fresh endpoints (no load history) for the addresses, using the options' clock.</summary>
    public static EndpointSet Create(IReadOnlyList<WeightedAddress> addresses, BalancerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        options ??= BalancerOptions.Default;
        var endpoints = new Endpoint[addresses.Count];
        for (var i = 0; i < endpoints.Length; i++)
        {
            endpoints[i] = new Endpoint(addresses[i].Address, addresses[i].Weight, options.Time, options.Decay, options.UnsampledPenalty);
        }

        return new EndpointSet(endpoints);
    }

    /// <summary>
    /// The snapshot for a changed list of addresses: an endpoint whose address and weight are unchanged
    /// keeps its object, so its in-flight count and latency estimate carry over (requests started on
    /// it end on the same object); added or re-weighted endpoints start fresh.
    /// </summary>
    public EndpointSet Update(IReadOnlyList<WeightedAddress> addresses, BalancerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        options ??= BalancerOptions.Default;
        var endpoints = new Endpoint[addresses.Count];
        for (var i = 0; i < endpoints.Length; i++)
        {
            var wanted = addresses[i];
            Endpoint? kept = null;
            foreach (var e in _endpoints)
            {
                if (e.Address == wanted.Address && e.Weight == wanted.Weight)
                {
                    kept = e;
                    break;
                }
            }

            endpoints[i] = kept ?? new Endpoint(wanted.Address, wanted.Weight, options.Time, options.Decay, options.UnsampledPenalty);
        }

        return new EndpointSet(endpoints);
    }

    public int Count => _endpoints.Length;

    public Endpoint this[int index] => _endpoints[index];

    public ReadOnlySpan<Endpoint> AsSpan() => _endpoints;

    public int TotalWeight { get; }

    /// <summary>True when every endpoint has the same weight (then uniform sampling is exact and cheaper).</summary>
    public bool WeightsEqual { get; }

    /// <summary>An index drawn with probability proportional to weight.</summary>
    internal int SampleWeighted(IRandomSource random)
    {
        if (WeightsEqual)
        {
            return random.Next(_endpoints.Length);
        }

        return IndexOfPoint(random.Next(TotalWeight));
    }

    /// <summary>
    /// Two distinct indexes, each drawn with probability proportional to weight (the second from the
    /// others). Needs at least two endpoints.
    /// </summary>
    internal void SampleTwo(IRandomSource random, out int first, out int second)
    {
        if (WeightsEqual)
        {
            first = random.Next(_endpoints.Length);
            second = random.Next(_endpoints.Length - 1);
            if (second >= first)
            {
                second++;
            }

            return;
        }

        first = IndexOfPoint(random.Next(TotalWeight));
        var firstWeight = _endpoints[first].Weight;
        var point = random.Next(TotalWeight - firstWeight);

        // Skip over the first endpoint's stretch of the weight line.
        var firstStart = _cumulative[first] - firstWeight;
        if (point >= firstStart)
        {
            point += firstWeight;
        }

        second = IndexOfPoint(point);
    }

    /// <summary>The endpoint whose stretch of [0, TotalWeight) holds <paramref name="point"/>.</summary>
    private int IndexOfPoint(long point)
    {
        // First i with _cumulative[i] > point.
        var lo = 0;
        var hi = _cumulative.Length - 1;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_cumulative[mid] > point)
            {
                hi = mid;
            }
            else
            {
                lo = mid + 1;
            }
        }

        return lo;
    }
}

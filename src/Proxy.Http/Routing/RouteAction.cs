using Proxy.Core.Configuration;
using System.Text;
using Proxy.Core.Balancing;

namespace Proxy.Http.Routing;

/// <summary>A service (and optional subset) a route sends requests to. Immutable; compare by reference.</summary>
public sealed class RouteDestination
{
    internal RouteDestination(string service, string? subset, int weight)
    {
        Service = service;
        Subset = subset;
        Weight = weight;
    }

    public string Service { get; }

    /// <summary>Subset of the service (e.g. <c>v2</c>), or null for the whole service.</summary>
    public string? Subset { get; }

    public int Weight { get; }

    public override string ToString() => Subset is null ? Service : $"{Service}/{Subset}";
}

/// <summary>
/// What a matched route does: choose a destination (one service, or a weighted split over subsets for a
/// canary such as v1 90 / v2 10) and the header changes for the request and the response.
/// </summary>
public sealed class RouteAction
{
    private readonly RouteDestination[] _destinations;
    private readonly int[] _cumulative;
    private readonly int _totalWeight;

    internal RouteAction(RouteActionConfig config)
    {
        if (config.Destinations.Count == 0)
        {
            throw new ArgumentException("a route action needs at least one destination", nameof(config));
        }

        _destinations = new RouteDestination[config.Destinations.Count];
        _cumulative = new int[_destinations.Length];
        long total = 0;
        for (var i = 0; i < _destinations.Length; i++)
        {
            var d = config.Destinations[i];
            if (d.Weight <= 0 && _destinations.Length > 1)
            {
                throw new ArgumentException($"destination {i}: weight must be positive", nameof(config));
            }

            _destinations[i] = new RouteDestination(d.Service, d.Subset, d.Weight);
            total += Math.Max(d.Weight, 1);
            if (total > int.MaxValue)
            {
                throw new ArgumentException("the sum of the weights exceeds 2147483647", nameof(config));
            }

            _cumulative[i] = (int)total;
        }

        _totalWeight = (int)total;
        RequestHeaders = new HeaderMutations(config.RequestHeaders);
        ResponseHeaders = new HeaderMutations(config.ResponseHeaders);
    }

    /// <summary>The destinations in configuration order.</summary>
    public ReadOnlySpan<RouteDestination> Destinations => _destinations;

    /// <summary>True when the action splits traffic over more than one destination.</summary>
    public bool IsSplit => _destinations.Length > 1;

    public HeaderMutations RequestHeaders { get; }

    public HeaderMutations ResponseHeaders { get; }

    /// <summary>
    /// Picks the destination for one request: the only one without consulting <paramref name="random"/>,
    /// otherwise each with probability weight / total weight. Allocates nothing.
    /// </summary>
    public RouteDestination PickDestination(IRandomSource random)
    {
        if (_destinations.Length == 1)
        {
            return _destinations[0];
        }

        var r = random.Next(_totalWeight);

        // Splits have a handful of entries: a linear scan beats a binary search here.
        var cumulative = _cumulative;
        for (var i = 0; i < cumulative.Length; i++)
        {
            if (r < cumulative[i])
            {
                return _destinations[i];
            }
        }

        return _destinations[^1];
    }
}

/// <summary>A header field as pre-encoded bytes (name as configured, value as ASCII/Latin-1).</summary>
public readonly record struct HeaderField(byte[] Name, byte[] Value);

/// <summary>
/// Header changes applied by the HTTP forwarder, allocation-free:
/// 1. drop every incoming field for which <see cref="IsRemoved"/> is true (the names in Remove and in Set);
/// 2. write every field of <see cref="Sets"/> (each replaces whatever the message carried);
/// 3. write every field of <see cref="Adds"/> (appended next to any the message carried).
/// </summary>
public sealed class HeaderMutations
{
    private readonly HeaderField[] _sets;
    private readonly HeaderField[] _adds;
    private readonly byte[][] _dropped;

    /// <summary>No changes.</summary>
    public static HeaderMutations None { get; } = new(new HeaderMutationsConfig());

    internal HeaderMutations(HeaderMutationsConfig config)
    {
        _sets = Encode(config.Set);
        _adds = Encode(config.Add);
        _dropped = new byte[config.Remove.Count + _sets.Length][];
        for (var i = 0; i < config.Remove.Count; i++)
        {
            _dropped[i] = Encoding.Latin1.GetBytes(config.Remove[i]);
        }

        for (var i = 0; i < _sets.Length; i++)
        {
            _dropped[config.Remove.Count + i] = _sets[i].Name;
        }
    }

    /// <summary>True when there is nothing to do (lets the forwarder skip the per-field check).</summary>
    public bool IsEmpty => _dropped.Length == 0 && _adds.Length == 0;

    public ReadOnlySpan<HeaderField> Sets => _sets;

    public ReadOnlySpan<HeaderField> Adds => _adds;

    /// <summary>Whether an incoming field with this name must not be forwarded (ASCII case-insensitive).</summary>
    public bool IsRemoved(ReadOnlySpan<byte> name)
    {
        foreach (var d in _dropped)
        {
            if (d.Length == name.Length && Ascii.EqualsIgnoreCase(d, name))
            {
                return true;
            }
        }

        return false;
    }

    private static HeaderField[] Encode(IReadOnlyList<KeyValuePair<string, string>> fields)
    {
        var result = new HeaderField[fields.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = new HeaderField(Encoding.Latin1.GetBytes(fields[i].Key), Encoding.Latin1.GetBytes(fields[i].Value));
        }

        return result;
    }
}

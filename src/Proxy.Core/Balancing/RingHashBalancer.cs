using System.Buffers.Binary;

namespace Proxy.Core.Balancing;

/// <summary>
/// Consistent hashing (Karger's ring): every endpoint owns virtual nodes at hashed points of a 64-bit
/// ring, as many as its weight times <see cref="BalancerOptions.VirtualNodesPerWeight"/> (scaled so the
/// ring has at least <see cref="BalancerOptions.MinRingSize"/> nodes, by doubling, and at most
/// <see cref="BalancerOptions.MaxRingSize"/>, by scaling down). A key goes to the first node at or after its hash. A node's point depends only on its
/// endpoint's address and its replica number, so every proxy builds the same ring, and removing one of
/// N endpoints moves only the keys it owned (about 1/N). A context without a key lands at a random point. A key whose
/// owner is unavailable (ejected, unhealthy) goes to the next available owner clockwise.
/// </summary>
public sealed class RingHashBalancer : ILoadBalancer
{
    private readonly EndpointSet _set;
    private readonly IRandomSource _random;

    // Parallel arrays sorted by point: the binary search touches only the dense ulong array.
    private readonly ulong[] _points;
    private readonly Endpoint[] _owners;

    public RingHashBalancer(EndpointSet endpoints, BalancerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        options ??= BalancerOptions.Default;
        ArgumentOutOfRangeException.ThrowIfLessThan(options.VirtualNodesPerWeight, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRingSize, endpoints.Count, nameof(options));
        _set = endpoints;
        _random = options.Random;

        var total = (long)endpoints.TotalWeight;
        // Doubling (rather than ceil(min / total)) keeps the count per weight unchanged when one endpoint
        // of many comes or goes, so the remap stays minimal; it changes only when a threshold is crossed.
        long perWeight = options.VirtualNodesPerWeight;
        while (total * perWeight < options.MinRingSize)
        {
            perWeight *= 2;
        }

        var nodes = new int[endpoints.Count];
        long size = 0;
        for (var i = 0; i < nodes.Length; i++)
        {
            var w = endpoints[i].Weight;
            nodes[i] = (int)Math.Max(1, total * perWeight > options.MaxRingSize ? w * options.MaxRingSize / total : w * perWeight);
            size += nodes[i];
        }

        _points = new ulong[size];
        _owners = new Endpoint[size];
        Span<byte> key = stackalloc byte[16 + 2 + 4];
        var k = 0;
        for (var i = 0; i < nodes.Length; i++)
        {
            var ep = endpoints[i].Address.EndPoint;
            var address = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
            key.Clear();
            address.TryWriteBytes(key, out _);
            BinaryPrimitives.WriteUInt16BigEndian(key[16..], (ushort)ep.Port);
            for (var replica = 0; replica < nodes[i]; replica++)
            {
                BinaryPrimitives.WriteInt32BigEndian(key[18..], replica);
                _points[k] = KeyHash.Hash(key);
                _owners[k] = endpoints[i];
                k++;
            }
        }

        Array.Sort(_points, _owners);
    }

    public EndpointSet Endpoints => _set;

    /// <summary>The number of virtual nodes on the ring.</summary>
    public int RingSize => _points.Length;

    public Endpoint Pick(in BalancerContext context)
    {
        if (_set.Count == 1)
        {
            return _set[0];
        }

        if (!context.HasHash)
        {
            var at = _random.Next(_owners.Length);
            var owner = _owners[at];
            return owner.IsAvailable ? owner : NextAvailable(at);
        }

        // First point >= hash; past the last point the ring wraps to the first.
        var points = _points;
        var hash = context.Hash;
        var lo = 0;
        var hi = points.Length;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (points[mid] < hash)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        var index = lo == points.Length ? 0 : lo;
        var found = _owners[index];
        return found.IsAvailable ? found : NextAvailable(index);
    }

    /// <summary>
    /// The owner at <paramref name="index"/> is unavailable (ejected, unhealthy): the next available owner clockwise, so
    /// only its keys move (and come back when it returns); the owner itself when none is available (panic).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private Endpoint NextAvailable(int index)
    {
        if (!Availability.Any(_set.AsSpan()))
        {
            return _owners[index];
        }

        for (var k = 1; k < _owners.Length; k++)
        {
            var i = index + k;
            if (i >= _owners.Length)
            {
                i -= _owners.Length;
            }

            if (_owners[i].IsAvailable)
            {
                return _owners[i];
            }
        }

        return _owners[index];
    }
}

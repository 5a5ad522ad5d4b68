using System.Net;
using System.Runtime.InteropServices;

namespace Proxy.Core.Balancing;

/// <summary>
/// What a balancer may know about the request it places: for now an optional 64-bit hash key (the HTTP
/// stage hashes a header or cookie, opaque TCP the client's IP). A small value type, passed by
/// <c>in</c>, so building one allocates nothing.
/// </summary>
[StructLayout(LayoutKind.Auto)]
public readonly struct BalancerContext
{
    private BalancerContext(ulong hash)
    {
        HasHash = true;
        Hash = hash;
    }

    /// <summary>No hash key: hash-based balancers place the request at a random point of the ring.</summary>
    public static BalancerContext None => default;

    public bool HasHash { get; }

    public ulong Hash { get; }

    /// <summary>A context whose key is an already computed hash.</summary>
    public static BalancerContext WithHash(ulong hash) => new(hash);

    /// <summary>A context whose key is the given bytes (e.g. a header value), hashed with <see cref="KeyHash"/>.</summary>
    public static BalancerContext WithKey(ReadOnlySpan<byte> key) => new(KeyHash.Hash(key));

    /// <summary>
    /// A context keyed on the client's IP address (not its port, which changes per connection). An
    /// IPv4-mapped IPv6 address hashes like its IPv4 form, so dual-stack listeners agree with IPv4 ones.
    /// </summary>
    public static BalancerContext WithSourceAddress(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (address.IsIPv4MappedToIPv6)
        {
            // MapToIPv4 would allocate; the IPv4 address is the last 4 of the 16 bytes.
            address.TryWriteBytes(bytes, out _);
            return new(KeyHash.Hash(bytes[12..]));
        }

        address.TryWriteBytes(bytes, out var written);
        return new(KeyHash.Hash(bytes[..written]));
    }
}

/// <summary>
/// The 64-bit hash of balancing keys and ring points: FNV-1a 64 over the bytes followed by the
/// MurmurHash3 fmix64 finaliser (FNV alone mixes short keys poorly into the high bits, which the ring
/// compares first). Written here rather than taken from a package; stable across processes and runs,
/// so every sidecar maps a key to the same endpoint.
/// </summary>
public static class KeyHash
{
    private const ulong FnvOffset = 14695981039346656037UL;
    private const ulong FnvPrime = 1099511628211UL;

    public static ulong Hash(ReadOnlySpan<byte> key)
    {
        var h = FnvOffset;
        foreach (var b in key)
        {
            h = (h ^ b) * FnvPrime;
        }

        return Mix(h);
    }

    /// <summary>The fmix64 avalanche step: every input bit affects every output bit.</summary>
    public static ulong Mix(ulong h)
    {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdUL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53UL;
        h ^= h >> 33;
        return h;
    }
}

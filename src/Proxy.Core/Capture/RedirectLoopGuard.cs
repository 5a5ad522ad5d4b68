using Proxy.Core.Addresses;

namespace Proxy.Core.Capture;

/// <summary>
/// Detects connections sent straight to a capture listener. Conntrack reports the listener's own address
/// as the "original destination" of a connection that was not redirected; forwarding it would connect
/// the proxy to itself, again and again. The caller refuses such a connection.
/// </summary>
public static class RedirectLoopGuard
{
    /// <summary>
    /// True when <paramref name="destination"/> is the listener itself. Pass the accepted socket's local
    /// endpoint as <paramref name="listener"/>. IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
    /// If <paramref name="listener"/> is a wildcard (0.0.0.0 or ::), a destination on the same port that is
    /// a loopback or unspecified address also counts as self. Allocates nothing (called per connection).
    /// </summary>
    public static bool IsSelf(OriginalDestination destination, ListenAddress listener)
    {
        var dst = destination.EndPoint;
        var local = listener.EndPoint;
        if (dst.Port != local.Port)
        {
            return false;
        }

        // Compare raw bytes on the stack: IPAddress.MapToIPv4 would allocate.
        Span<byte> dstBuffer = stackalloc byte[16];
        Span<byte> localBuffer = stackalloc byte[16];
        var dstBytes = Normalize(dst.Address.TryWriteBytes(dstBuffer, out var dstLength) ? dstBuffer[..dstLength] : []);
        var localBytes = Normalize(local.Address.TryWriteBytes(localBuffer, out var localLength) ? localBuffer[..localLength] : []);
        if (dstBytes.SequenceEqual(localBytes))
        {
            return true;
        }

        if (localBytes.IndexOfAnyExcept((byte)0) < 0)
        {
            return IsLoopback(dstBytes) || dstBytes.IndexOfAnyExcept((byte)0) < 0;
        }

        return false;
    }

    /// <summary>::ffff:a.b.c.d becomes a.b.c.d; anything else is unchanged.</summary>
    private static ReadOnlySpan<byte> Normalize(ReadOnlySpan<byte> address) =>
        address.Length == 16 && address[..10].IndexOfAnyExcept((byte)0) < 0 && address[10] == 0xff && address[11] == 0xff
            ? address[12..]
            : address;

    private static bool IsLoopback(ReadOnlySpan<byte> address) =>
        address.Length == 4
            ? address[0] == 127
            : address.Length == 16 && address[..15].IndexOfAnyExcept((byte)0) < 0 && address[15] == 1;
}

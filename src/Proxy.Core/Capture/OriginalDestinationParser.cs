using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Runtime.InteropServices;

namespace Proxy.Core.Capture;

/// <summary>
/// Parses the <c>sockaddr</c> that <c>getsockopt(SO_ORIGINAL_DST)</c> fills in. Pure: no I/O, so it is
/// unit-tested and benchmarked on its own.
/// </summary>
/// <remarks>
/// Linux layouts (sa_family is in host byte order, port and addresses in network byte order):
/// <code>
/// sockaddr_in  (16 bytes): | family u16 | port u16 | addr 4 bytes | zero 8 bytes |
/// sockaddr_in6 (28 bytes): | family u16 | port u16 | flowinfo u32 | addr 16 bytes | scope_id u32 |
/// </code>
/// </remarks>
public static class OriginalDestinationParser
{
    /// <summary>Linux AF_INET.</summary>
    public const ushort AddressFamilyInet = 2;

    /// <summary>Linux AF_INET6.</summary>
    public const ushort AddressFamilyInet6 = 10;

    /// <summary>sizeof(struct sockaddr_in).</summary>
    public const int SockaddrInLength = 16;

    /// <summary>sizeof(struct sockaddr_in6).</summary>
    public const int SockaddrIn6Length = 28;

    /// <summary>
    /// Reads an IPv4 or IPv6 socket address. Returns false when the buffer is shorter than its family
    /// requires or the family is neither AF_INET nor AF_INET6. Allocates only the returned endpoint.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> sockaddr, [NotNullWhen(true)] out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (sockaddr.Length < 2)
        {
            return false;
        }

        // sa_family is a host-order u16 (the kernel writes it natively), unlike the port.
        var family = MemoryMarshal.Read<ushort>(sockaddr);
        if (family == AddressFamilyInet)
        {
            if (sockaddr.Length < SockaddrInLength)
            {
                return false;
            }

            int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr.Slice(2, 2));
            // IPAddress(long) takes the address as its in-memory (network order) bytes: a native read of
            // the 4 bytes is exactly that, and avoids the byte[] the span constructor would allocate.
            long address = MemoryMarshal.Read<uint>(sockaddr.Slice(4, 4));
            endPoint = new IPEndPoint(new IPAddress(address), port);
            return true;
        }

        if (family == AddressFamilyInet6)
        {
            if (sockaddr.Length < SockaddrIn6Length)
            {
                return false;
            }

            int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr.Slice(2, 2));
            var scopeId = MemoryMarshal.Read<uint>(sockaddr.Slice(24, 4));
            endPoint = new IPEndPoint(new IPAddress(sockaddr.Slice(8, 16), scopeId), port);
            return true;
        }

        return false;
    }
}

using System.Text;

namespace Proxy.Tls.ClientHello;

/// <summary>
/// A parsed ClientHello. A view: its spans point into the input (one record) or into the caller's scratch buffer
/// (reassembled from several records), so it lives only as long as they do. Nothing here allocates except
/// <see cref="GetServerName"/>.
/// </summary>
public readonly ref struct ClientHelloInfo
{
    internal ClientHelloInfo(ReadOnlySpan<byte> message, ushort legacyVersion, ushort maxVersion, ClientHelloFlags flags, ReadOnlySpan<byte> serverName, ReadOnlySpan<byte> alpn)
    {
        Message = message;
        LegacyVersion = legacyVersion;
        MaxVersion = maxVersion;
        Flags = flags;
        ServerName = serverName;
        AlpnList = alpn;
    }

    /// <summary>The ClientHello body (after the 4-byte handshake header).</summary>
    public ReadOnlySpan<byte> Message { get; }

    /// <summary>legacy_version (0x0303 for TLS 1.2 and 1.3 clients).</summary>
    public ushort LegacyVersion { get; }

    /// <summary>The highest version offered: the largest non-GREASE entry of supported_versions, else <see cref="LegacyVersion"/>.</summary>
    public ushort MaxVersion { get; }

    public ClientHelloFlags Flags { get; }

    /// <summary>The SNI host_name as sent (ASCII, validated as a DNS name, not lower-cased); empty when absent.</summary>
    public ReadOnlySpan<byte> ServerName { get; }

    /// <summary>The ALPN protocol_name_list without its length prefix (validated); empty when absent.</summary>
    public ReadOnlySpan<byte> AlpnList { get; }

    public bool HasServerName => (Flags & ClientHelloFlags.HasServerName) != 0;

    /// <summary>TLS 1.3 is offered (supported_versions lists 0x0304).</summary>
    public bool OffersTls13 => (Flags & ClientHelloFlags.OffersTls13) != 0;

    /// <summary>The ALPN protocols, one span each, in the client's order. No allocation.</summary>
    public AlpnEnumerator AlpnProtocols => new(AlpnList);

    /// <summary>The SNI lower-cased as a string (one allocation), or null when absent.</summary>
    public string? GetServerName()
    {
        if (ServerName.IsEmpty)
        {
            return null;
        }

        Span<byte> lower = stackalloc byte[ServerNameSyntax.MaxLength];
        var n = ServerNameSyntax.ToLower(ServerName, lower);
        return Encoding.ASCII.GetString(lower[..n]);
    }

    /// <summary>The SNI lower-cased into <paramref name="destination"/> (at least <see cref="ServerNameSyntax.MaxLength"/> chars); the length written.</summary>
    public int CopyServerNameLower(Span<char> destination) => ServerNameSyntax.ToLower(ServerName, destination);
}

/// <summary>Walks an ALPN protocol_name_list (already validated by the parser): each item is a span of the name.</summary>
public ref struct AlpnEnumerator
{
    private readonly ReadOnlySpan<byte> _list;
    private int _next;

    internal AlpnEnumerator(ReadOnlySpan<byte> list)
    {
        _list = list;
        _next = 0;
        Current = default;
    }

    public ReadOnlySpan<byte> Current { get; private set; }

    public readonly AlpnEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        // Bounds are re-checked so a hand-made list cannot walk out of range.
        if ((uint)_next >= (uint)_list.Length)
        {
            return false;
        }

        var length = _list[_next];
        var start = _next + 1;
        if (length == 0 || length > _list.Length - start)
        {
            _next = _list.Length;
            return false;
        }

        Current = _list.Slice(start, length);
        _next = start + length;
        return true;
    }
}

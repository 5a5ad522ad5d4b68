using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Proxy.Tls.ClientHello;

/// <summary>
/// Reads a TLS ClientHello from the first bytes a client sent, without consuming anything (the caller peeked them or
/// will hand the same buffer on). Hand-written, allocation-free, never throws for any input, and every loop is bounded
/// by the input length.
/// <code>
/// record   (RFC 8446 5.1)   type=22(1) | version 3.x(2) | length 1..2^14(2) | fragment
/// handshake(RFC 8446 4)     msg_type=1(1) | length(3) | ClientHello        ← may be fragmented over several records
/// ClientHello (4.1.2)       legacy_version(2) | random(32) | session_id&lt;0..32&gt; | cipher_suites&lt;2..2^16-2&gt;
///                           | compression_methods&lt;1..2^8-1&gt; | [extensions&lt;8..2^16-1&gt;]   (absent before TLS 1.2)
/// extension                 type(2) | length(2) | data; server_name(0), ALPN(16), supported_versions(43),
///                           session_ticket(35), early_data(42), pre_shared_key(41) are read, the rest skipped
/// </code>
/// <para>Bounds: the handshake message (header included) is at most <see cref="MaxMessageLength"/> (16 KiB) and may
/// span at most <see cref="MaxRecords"/> records, so no more than <see cref="MaxWireLength"/> bytes are ever needed.
/// A ClientHello inside one record is parsed in place; one spanning records is copied into the caller's scratch
/// buffer (<see cref="MaxMessageLength"/> bytes suffice).</para>
/// <para>Strict: each length is checked against its parent (record, message, extensions block, extension); duplicate
/// extensions, pre_shared_key not last, an empty or malformed SNI or ALPN entry are errors.</para>
/// </summary>
public static class ClientHelloParser
{
    /// <summary>Largest ClientHello handshake message accepted, its 4-byte header included.</summary>
    public const int MaxMessageLength = 16 * 1024;

    /// <summary>Most records a ClientHello may be fragmented over.</summary>
    public const int MaxRecords = 64;

    /// <summary>The most bytes that can ever be needed to complete a ClientHello.</summary>
    public const int MaxWireLength = MaxMessageLength + (MaxRecords * RecordHeaderLength);

    /// <summary>Scratch needed by the <see cref="ReadOnlySequence{T}"/> overload when the input is multi-segment.</summary>
    public const int SequenceScratchLength = MaxWireLength + MaxMessageLength;

    private const int RecordHeaderLength = 5;
    private const int HandshakeHeaderLength = 4;
    private const int MaxRecordLength = 1 << 14;
    private const byte ContentTypeHandshake = 22;
    private const byte HandshakeClientHello = 1;

    // legacy_version(2) + random(32) + session_id length(1) + cipher_suites length(2) + one suite(2)
    // + compression_methods length(1) + one method(1).
    private const int MinBodyLength = 41;

    private const ushort ExtServerName = 0;
    private const ushort ExtAlpn = 16;
    private const ushort ExtSessionTicket = 35;
    private const ushort ExtPreSharedKey = 41;
    private const ushort ExtEarlyData = 42;
    private const ushort ExtSupportedVersions = 43;

    /// <summary>Parses a ClientHello that fits in one record (else <see cref="ClientHelloError.ScratchTooSmall"/>).</summary>
    public static ClientHelloResult TryParse(ReadOnlySpan<byte> input, out ClientHelloInfo hello) => TryParse(input, default, out hello);

    /// <summary>
    /// Parses the ClientHello at the start of <paramref name="input"/>. <paramref name="scratch"/> receives the message
    /// when it spans records (<see cref="MaxMessageLength"/> bytes always suffice); <paramref name="hello"/> then points
    /// into it, else into <paramref name="input"/>.
    /// </summary>
    public static ClientHelloResult TryParse(ReadOnlySpan<byte> input, Span<byte> scratch, out ClientHelloInfo hello)
    {
        hello = default;
        var scan = ScanRecords(input, out var messageLength, out var records, out var wireLength);
        if (scan.Status != ClientHelloStatus.Parsed)
        {
            return scan;
        }

        ReadOnlySpan<byte> message;
        var flags = ClientHelloFlags.None;
        if (records == 1)
        {
            message = input.Slice(RecordHeaderLength, messageLength);
        }
        else
        {
            if (scratch.Length < messageLength)
            {
                return ClientHelloResult.Invalid(ClientHelloError.ScratchTooSmall);
            }

            Reassemble(input, scratch[..messageLength]);
            message = scratch[..messageLength];
            flags = ClientHelloFlags.Reassembled;
        }

        var error = ParseBody(message[HandshakeHeaderLength..], flags, out hello);
        return error == ClientHelloError.None
            ? new ClientHelloResult(ClientHelloStatus.Parsed, ClientHelloError.None, wireLength)
            : ClientHelloResult.Invalid(error);
    }

    /// <summary>
    /// Parses the ClientHello at the start of <paramref name="input"/>. A single-segment sequence takes the span path;
    /// a multi-segment one is first copied (at most <see cref="MaxWireLength"/> bytes) into <paramref name="scratch"/>,
    /// which then needs <see cref="SequenceScratchLength"/> bytes.
    /// </summary>
    public static ClientHelloResult TryParse(in ReadOnlySequence<byte> input, Span<byte> scratch, out ClientHelloInfo hello)
    {
        if (input.IsSingleSegment)
        {
            return TryParse(input.FirstSpan, scratch, out hello);
        }

        return TryParseMultiSegment(input, scratch, out hello);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ClientHelloResult TryParseMultiSegment(in ReadOnlySequence<byte> input, Span<byte> scratch, out ClientHelloInfo hello)
    {
        hello = default;
        var length = (int)Math.Min(input.Length, MaxWireLength);
        if (scratch.Length < length)
        {
            // Only a scratch at least as large as what is offered (or the maximum) lets the span path see all of it.
            return ClientHelloResult.Invalid(ClientHelloError.ScratchTooSmall);
        }

        var wire = scratch[..length];
        input.Slice(0, length).CopyTo(wire);
        return TryParse(wire, scratch[length..], out hello);
    }

    /// <summary>
    /// Walks the records from the start of <paramref name="input"/> until the ClientHello is complete, checking each
    /// record header and the handshake header. Parsed here means "complete", with the message length (header included),
    /// the number of records it spans and the wire bytes up to its last byte.
    /// </summary>
    private static ClientHelloResult ScanRecords(ReadOnlySpan<byte> input, out int messageLength, out int records, out int wireLength)
    {
        messageLength = -1;
        records = 0;
        wireLength = 0;
        Span<byte> handshakeHeader = stackalloc byte[HandshakeHeaderLength];
        var headerHave = 0;
        var collected = 0; // message bytes seen in complete or partial fragments so far
        var pos = 0;
        while (true)
        {
            var remaining = input.Length - pos;
            if (remaining < RecordHeaderLength)
            {
                var error = CheckPartialRecordHeader(input[pos..], first: records == 0);
                return error == ClientHelloError.None
                    ? ClientHelloResult.Incomplete(pos + RecordHeaderLength)
                    : ClientHelloResult.Invalid(error);
            }

            var recordError = CheckRecordHeader(input.Slice(pos, RecordHeaderLength), first: records == 0, out var recordLength);
            if (recordError != ClientHelloError.None)
            {
                return ClientHelloResult.Invalid(recordError);
            }

            records++;
            var fragmentStart = pos + RecordHeaderLength;
            var available = Math.Min(recordLength, input.Length - fragmentStart);
            var fragment = input.Slice(fragmentStart, available);

            // The handshake header may itself be split over records (at most 4 of them).
            var f = 0;
            while (headerHave < HandshakeHeaderLength && f < fragment.Length)
            {
                handshakeHeader[headerHave++] = fragment[f++];
                if (headerHave == 1 && handshakeHeader[0] != HandshakeClientHello)
                {
                    return ClientHelloResult.Invalid(ClientHelloError.NotClientHello);
                }
            }

            if (headerHave == HandshakeHeaderLength && messageLength < 0)
            {
                var bodyLength = (handshakeHeader[1] << 16) | (handshakeHeader[2] << 8) | handshakeHeader[3];
                if (bodyLength > MaxMessageLength - HandshakeHeaderLength)
                {
                    return ClientHelloResult.Invalid(ClientHelloError.Oversize);
                }

                if (bodyLength < MinBodyLength)
                {
                    return ClientHelloResult.Invalid(ClientHelloError.BadHandshakeLength);
                }

                messageLength = bodyLength + HandshakeHeaderLength;
            }

            if (messageLength >= 0 && collected + available >= messageLength)
            {
                wireLength = fragmentStart + (messageLength - collected);
                return new ClientHelloResult(ClientHelloStatus.Parsed, ClientHelloError.None, wireLength);
            }

            if (available < recordLength)
            {
                // Need more of this record: up to its end, or only up to the message's end when that comes first.
                var needed = messageLength >= 0
                    ? fragmentStart + Math.Min(recordLength, messageLength - collected)
                    : fragmentStart + recordLength;
                return ClientHelloResult.Incomplete(Math.Min(needed, MaxWireLength));
            }

            collected += recordLength;
            pos = fragmentStart + recordLength;
            if (records == MaxRecords)
            {
                // The hello needs another record, which would be one too many. Said now rather than after its header
                // arrives, so BytesNeeded never exceeds MaxWireLength.
                return ClientHelloResult.Invalid(ClientHelloError.TooManyRecords);
            }
        }
    }

    private static ClientHelloError CheckRecordHeader(ReadOnlySpan<byte> header, bool first, out int length)
    {
        length = 0;
        if (header[0] != ContentTypeHandshake)
        {
            return first ? ClientHelloError.NotHandshake : ClientHelloError.UnexpectedRecordType;
        }

        if (header[1] != 3 || header[2] > 4)
        {
            return ClientHelloError.BadRecordVersion;
        }

        length = BinaryPrimitives.ReadUInt16BigEndian(header[3..]);
        return length is 0 or > MaxRecordLength ? ClientHelloError.BadRecordLength : ClientHelloError.None;
    }

    /// <summary>What can already be rejected from the first 0..4 bytes of a record header.</summary>
    private static ClientHelloError CheckPartialRecordHeader(ReadOnlySpan<byte> header, bool first)
    {
        if (header.Length >= 1 && header[0] != ContentTypeHandshake)
        {
            return first ? ClientHelloError.NotHandshake : ClientHelloError.UnexpectedRecordType;
        }

        if ((header.Length >= 2 && header[1] != 3) || (header.Length >= 3 && header[2] > 4))
        {
            return ClientHelloError.BadRecordVersion;
        }

        return header.Length >= 4 && header[3] > (MaxRecordLength >> 8) ? ClientHelloError.BadRecordLength : ClientHelloError.None;
    }

    /// <summary>Copies the fragments of the (already scanned, complete) records into <paramref name="message"/>.</summary>
    private static void Reassemble(ReadOnlySpan<byte> input, Span<byte> message)
    {
        var pos = 0;
        var written = 0;
        while (written < message.Length)
        {
            var recordLength = BinaryPrimitives.ReadUInt16BigEndian(input.Slice(pos + 3, 2));
            var take = Math.Min(recordLength, message.Length - written);
            input.Slice(pos + RecordHeaderLength, take).CopyTo(message[written..]);
            written += take;
            pos += RecordHeaderLength + recordLength;
        }
    }

    /// <summary>Parses the ClientHello body (after the handshake header); every length is checked against its parent.</summary>
    private static ClientHelloError ParseBody(ReadOnlySpan<byte> body, ClientHelloFlags flags, out ClientHelloInfo hello)
    {
        hello = default;

        // The fixed part: MinBodyLength was checked by the scan, so version, random and the session id length are there.
        var legacyVersion = BinaryPrimitives.ReadUInt16BigEndian(body);
        var r = 2 + 32;
        int sessionIdLength = body[r++];
        if (sessionIdLength > 32 || sessionIdLength > body.Length - r)
        {
            return ClientHelloError.BadSessionIdLength;
        }

        r += sessionIdLength;
        if (body.Length - r < 2)
        {
            return ClientHelloError.BadHandshakeLength;
        }

        int cipherSuitesLength = BinaryPrimitives.ReadUInt16BigEndian(body[r..]);
        r += 2;
        if (cipherSuitesLength < 2 || (cipherSuitesLength & 1) != 0 || cipherSuitesLength > body.Length - r)
        {
            return ClientHelloError.BadCipherSuitesLength;
        }

        r += cipherSuitesLength;
        if (body.Length - r < 1)
        {
            return ClientHelloError.BadHandshakeLength;
        }

        int compressionLength = body[r++];
        if (compressionLength < 1 || compressionLength > body.Length - r)
        {
            return ClientHelloError.BadCompressionMethodsLength;
        }

        r += compressionLength;
        var maxVersion = legacyVersion;
        ReadOnlySpan<byte> serverName = default;
        ReadOnlySpan<byte> alpn = default;
        if (r == body.Length)
        {
            // No extensions (allowed before TLS 1.3).
            hello = new ClientHelloInfo(body, legacyVersion, maxVersion, flags, serverName, alpn);
            return ClientHelloError.None;
        }

        if (body.Length - r < 2)
        {
            return ClientHelloError.BadExtensionsLength;
        }

        int extensionsLength = BinaryPrimitives.ReadUInt16BigEndian(body[r..]);
        r += 2;
        if (extensionsLength != body.Length - r)
        {
            return ClientHelloError.BadExtensionsLength;
        }

        var extensions = body[r..];

        // Duplicate detection without allocating: the types seen so far in a small stack array (real ClientHellos carry
        // 10-25 extensions); for more, a 64 Ki-bit set on the stack (8 KiB, zeroed: only for absurd inputs).
        const int SmallSeen = 48;
        var useBits = CountExtensions(extensions) > SmallSeen;
        Span<ushort> seen = stackalloc ushort[SmallSeen];
        Span<ulong> seenBits = useBits ? stackalloc ulong[65536 / 64] : default;
        var seenCount = 0;
        var e = 0;
        var pskSeen = false;
        while (e < extensions.Length)
        {
            if (extensions.Length - e < 4)
            {
                return ClientHelloError.TruncatedExtension;
            }

            var type = BinaryPrimitives.ReadUInt16BigEndian(extensions[e..]);
            int length = BinaryPrimitives.ReadUInt16BigEndian(extensions[(e + 2)..]);
            e += 4;
            if (length > extensions.Length - e)
            {
                return ClientHelloError.TruncatedExtension;
            }

            if (pskSeen)
            {
                return ClientHelloError.PskNotLast;
            }

            if (!useBits)
            {
                if (seen[..seenCount].Contains(type))
                {
                    return ClientHelloError.DuplicateExtension;
                }

                seen[seenCount] = type;
            }
            else
            {
                ref var word = ref seenBits[type >> 6];
                var bit = 1UL << (type & 63);
                if ((word & bit) != 0)
                {
                    return ClientHelloError.DuplicateExtension;
                }

                word |= bit;
            }

            seenCount++;
            var data = extensions.Slice(e, length);
            e += length;
            switch (type)
            {
                case ExtServerName:
                    var sniError = ReadServerName(data, out serverName);
                    if (sniError != ClientHelloError.None)
                    {
                        return sniError;
                    }

                    if (!serverName.IsEmpty)
                    {
                        flags |= ClientHelloFlags.HasServerName;
                    }

                    break;
                case ExtAlpn:
                    var alpnError = ReadAlpn(data, out alpn, ref flags);
                    if (alpnError != ClientHelloError.None)
                    {
                        return alpnError;
                    }

                    flags |= ClientHelloFlags.HasAlpn;
                    break;
                case ExtSupportedVersions:
                    var versionsError = ReadSupportedVersions(data, ref maxVersion, ref flags);
                    if (versionsError != ClientHelloError.None)
                    {
                        return versionsError;
                    }

                    flags |= ClientHelloFlags.HasSupportedVersions;
                    break;
                case ExtSessionTicket:
                    if (length > 0)
                    {
                        flags |= ClientHelloFlags.HasSessionTicket;
                    }

                    break;
                case ExtPreSharedKey:
                    flags |= ClientHelloFlags.HasPreSharedKey;
                    pskSeen = true;
                    break;
                case ExtEarlyData:
                    flags |= ClientHelloFlags.HasEarlyData;
                    break;
            }
        }

        hello = new ClientHelloInfo(body, legacyVersion, maxVersion, flags, serverName, alpn);
        return ClientHelloError.None;
    }

    /// <summary>How many extension headers the block holds (stops where one would run past the end).</summary>
    private static int CountExtensions(ReadOnlySpan<byte> extensions)
    {
        var count = 0;
        var e = 0;
        while (extensions.Length - e >= 4)
        {
            e += 4 + BinaryPrimitives.ReadUInt16BigEndian(extensions[(e + 2)..]);
            count++;
        }

        return count;
    }

    /// <summary>
    /// server_name (RFC 6066 3): ServerNameList&lt;1..2^16-1&gt; of { name_type(1), HostName&lt;1..2^16-1&gt; }; at most one
    /// host_name (type 0); other name types are skipped. The host_name must be a DNS name.
    /// </summary>
    private static ClientHelloError ReadServerName(ReadOnlySpan<byte> data, out ReadOnlySpan<byte> hostName)
    {
        hostName = default;
        if (data.Length < 2)
        {
            return ClientHelloError.BadServerNameExtension;
        }

        int listLength = BinaryPrimitives.ReadUInt16BigEndian(data);
        if (listLength == 0 || listLength != data.Length - 2)
        {
            return ClientHelloError.BadServerNameExtension;
        }

        var list = data[2..];
        var i = 0;
        var found = false;
        while (i < list.Length)
        {
            if (list.Length - i < 3)
            {
                return ClientHelloError.BadServerNameExtension;
            }

            var nameType = list[i];
            int nameLength = BinaryPrimitives.ReadUInt16BigEndian(list[(i + 1)..]);
            i += 3;
            if (nameLength == 0 || nameLength > list.Length - i)
            {
                return ClientHelloError.BadServerNameExtension;
            }

            if (nameType == 0)
            {
                if (found)
                {
                    return ClientHelloError.BadServerNameExtension;
                }

                found = true;
                hostName = list.Slice(i, nameLength);
                if (!ServerNameSyntax.IsValid(hostName))
                {
                    hostName = default;
                    return ClientHelloError.InvalidServerName;
                }
            }

            i += nameLength;
        }

        return ClientHelloError.None;
    }

    /// <summary>ALPN (RFC 7301 3.1): ProtocolNameList&lt;2..2^16-1&gt; of ProtocolName&lt;1..2^8-1&gt;.</summary>
    private static ClientHelloError ReadAlpn(ReadOnlySpan<byte> data, out ReadOnlySpan<byte> list, scoped ref ClientHelloFlags flags)
    {
        list = default;
        if (data.Length < 2)
        {
            return ClientHelloError.BadAlpnExtension;
        }

        int listLength = BinaryPrimitives.ReadUInt16BigEndian(data);
        if (listLength < 2 || listLength != data.Length - 2)
        {
            return ClientHelloError.BadAlpnExtension;
        }

        var names = data[2..];
        var i = 0;
        while (i < names.Length)
        {
            int length = names[i++];
            if (length == 0 || length > names.Length - i)
            {
                return ClientHelloError.BadAlpnExtension;
            }

            var name = names.Slice(i, length);
            if (name.SequenceEqual("h2"u8))
            {
                flags |= ClientHelloFlags.OffersH2;
            }
            else if (name.SequenceEqual("http/1.1"u8))
            {
                flags |= ClientHelloFlags.OffersHttp11;
            }

            i += length;
        }

        list = names;
        return ClientHelloError.None;
    }

    /// <summary>supported_versions in a ClientHello (RFC 8446 4.2.1): versions&lt;2..254&gt;, GREASE values ignored.</summary>
    private static ClientHelloError ReadSupportedVersions(ReadOnlySpan<byte> data, ref ushort maxVersion, ref ClientHelloFlags flags)
    {
        if (data.Length < 1)
        {
            return ClientHelloError.BadSupportedVersionsExtension;
        }

        int length = data[0];
        if (length < 2 || (length & 1) != 0 || length != data.Length - 1)
        {
            return ClientHelloError.BadSupportedVersionsExtension;
        }

        ushort max = 0;
        for (var i = 1; i < data.Length; i += 2)
        {
            var version = BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
            if (IsGrease(version))
            {
                continue;
            }

            if (version == 0x0304)
            {
                flags |= ClientHelloFlags.OffersTls13;
            }

            if (version > max)
            {
                max = version;
            }
        }

        if (max != 0)
        {
            maxVersion = max;
        }

        return ClientHelloError.None;
    }

    /// <summary>RFC 8701 GREASE values: 0x?A?A with both bytes equal.</summary>
    private static bool IsGrease(ushort value) => (value & 0x0F0F) == 0x0A0A && (value >> 8) == (value & 0xFF);
}

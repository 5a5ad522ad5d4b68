namespace Proxy.Tls.ClientHello;

/// <summary>How far <see cref="ClientHelloParser"/> got.</summary>
public enum ClientHelloStatus : byte
{
    /// <summary>The bytes so far are a valid prefix of a ClientHello; more are needed (see <see cref="ClientHelloResult.BytesNeeded"/>).</summary>
    Incomplete,

    /// <summary>The bytes are not a well-formed ClientHello (see <see cref="ClientHelloResult.Error"/>). More bytes cannot fix it.</summary>
    Invalid,

    /// <summary>A complete, well-formed ClientHello was read.</summary>
    Parsed,
}

/// <summary>Why a ClientHello is invalid. Every nested length is checked against its parent's.</summary>
public enum ClientHelloError : byte
{
    None,

    /// <summary>The first record is not a handshake record (content type 22): not TLS at all.</summary>
    NotHandshake,

    /// <summary>The record's protocol version is not 3.x with x in 0..4.</summary>
    BadRecordVersion,

    /// <summary>A record length of 0 or more than 2^14 (RFC 8446 5.1).</summary>
    BadRecordLength,

    /// <summary>A record other than handshake arrived before the ClientHello was complete (no interleaving, RFC 8446 5.1).</summary>
    UnexpectedRecordType,

    /// <summary>The ClientHello is fragmented over more than <see cref="ClientHelloParser.MaxRecords"/> records.</summary>
    TooManyRecords,

    /// <summary>The first handshake message is not a ClientHello (type 1).</summary>
    NotClientHello,

    /// <summary>The handshake message is longer than <see cref="ClientHelloParser.MaxMessageLength"/>.</summary>
    Oversize,

    /// <summary>The handshake length is too small for the fixed fields, or the body ends inside one of them.</summary>
    BadHandshakeLength,

    /// <summary>legacy_session_id longer than 32 bytes or past the message.</summary>
    BadSessionIdLength,

    /// <summary>cipher_suites empty, odd, or past the message.</summary>
    BadCipherSuitesLength,

    /// <summary>legacy_compression_methods empty or past the message.</summary>
    BadCompressionMethodsLength,

    /// <summary>The extensions block does not exactly fill the rest of the message.</summary>
    BadExtensionsLength,

    /// <summary>An extension header or body runs past the extensions block.</summary>
    TruncatedExtension,

    /// <summary>The same extension type appears twice (RFC 8446 4.2).</summary>
    DuplicateExtension,

    /// <summary>pre_shared_key is not the last extension (RFC 8446 4.2.11).</summary>
    PskNotLast,

    /// <summary>server_name: list length mismatch, an empty or overlong name, or two host_name entries.</summary>
    BadServerNameExtension,

    /// <summary>The host_name is not a DNS name (letters, digits, '-', '_' in dot-separated labels of 1..63, at most 253).</summary>
    InvalidServerName,

    /// <summary>application_layer_protocol_negotiation: list length mismatch, or an empty protocol name.</summary>
    BadAlpnExtension,

    /// <summary>supported_versions: length odd, zero, or not matching the extension.</summary>
    BadSupportedVersionsExtension,

    /// <summary>The ClientHello spans records and the caller's scratch buffer is smaller than the message.</summary>
    ScratchTooSmall,
}

/// <summary>The outcome of one parse: nothing is ever consumed, so the caller peeks or reads again from the same start.</summary>
/// <param name="Status">Incomplete, Invalid or Parsed.</param>
/// <param name="Error">Why Invalid (None otherwise).</param>
/// <param name="BytesNeeded">
/// Incomplete: the total input length (from the first record's first byte) that lets the parser make progress: the end
/// of the record it is in, or the next record header. A lower bound, never more than the ClientHello needs.
/// Parsed: the wire bytes of the records holding the ClientHello. Invalid: 0.
/// </param>
public readonly record struct ClientHelloResult(ClientHelloStatus Status, ClientHelloError Error, int BytesNeeded)
{
    public bool IsParsed => Status == ClientHelloStatus.Parsed;

    internal static ClientHelloResult Incomplete(int needed) => new(ClientHelloStatus.Incomplete, ClientHelloError.None, needed);

    internal static ClientHelloResult Invalid(ClientHelloError error) => new(ClientHelloStatus.Invalid, error, 0);

    /// <summary>Short, stable text for logs: <c>parsed</c>, <c>incomplete</c>, or the error in snake case.</summary>
    public string Describe() => Status switch
    {
        ClientHelloStatus.Parsed => "parsed",
        ClientHelloStatus.Incomplete => "incomplete",
        _ => ClientHelloErrors.Describe(Error),
    };
}

/// <summary>Cheap facts about the ClientHello, read while parsing.</summary>
[Flags]
public enum ClientHelloFlags : ushort
{
    None = 0,
    HasServerName = 1 << 0,
    HasAlpn = 1 << 1,
    HasSupportedVersions = 1 << 2,

    /// <summary>session_ticket with a non-empty ticket (TLS 1.2 resumption attempt).</summary>
    HasSessionTicket = 1 << 3,

    /// <summary>pre_shared_key (TLS 1.3 resumption or external PSK).</summary>
    HasPreSharedKey = 1 << 4,

    /// <summary>early_data (0-RTT data may follow the ClientHello).</summary>
    HasEarlyData = 1 << 5,

    /// <summary>supported_versions lists TLS 1.3 (0x0304).</summary>
    OffersTls13 = 1 << 6,

    /// <summary>The ALPN list contains <c>h2</c>.</summary>
    OffersH2 = 1 << 7,

    /// <summary>The ALPN list contains <c>http/1.1</c>.</summary>
    OffersHttp11 = 1 << 8,

    /// <summary>The message was reassembled from more than one record (into the caller's scratch buffer).</summary>
    Reassembled = 1 << 9,
}

internal static class ClientHelloErrors
{
    public static string Describe(ClientHelloError error) => error switch
    {
        ClientHelloError.None => "none",
        ClientHelloError.NotHandshake => "not_handshake",
        ClientHelloError.BadRecordVersion => "bad_record_version",
        ClientHelloError.BadRecordLength => "bad_record_length",
        ClientHelloError.UnexpectedRecordType => "unexpected_record_type",
        ClientHelloError.TooManyRecords => "too_many_records",
        ClientHelloError.NotClientHello => "not_client_hello",
        ClientHelloError.Oversize => "oversize",
        ClientHelloError.BadHandshakeLength => "bad_handshake_length",
        ClientHelloError.BadSessionIdLength => "bad_session_id_length",
        ClientHelloError.BadCipherSuitesLength => "bad_cipher_suites_length",
        ClientHelloError.BadCompressionMethodsLength => "bad_compression_methods_length",
        ClientHelloError.BadExtensionsLength => "bad_extensions_length",
        ClientHelloError.TruncatedExtension => "truncated_extension",
        ClientHelloError.DuplicateExtension => "duplicate_extension",
        ClientHelloError.PskNotLast => "psk_not_last",
        ClientHelloError.BadServerNameExtension => "bad_server_name_extension",
        ClientHelloError.InvalidServerName => "invalid_server_name",
        ClientHelloError.BadAlpnExtension => "bad_alpn_extension",
        ClientHelloError.BadSupportedVersionsExtension => "bad_supported_versions_extension",
        ClientHelloError.ScratchTooSmall => "scratch_too_small",
        _ => "unknown",
    };
}

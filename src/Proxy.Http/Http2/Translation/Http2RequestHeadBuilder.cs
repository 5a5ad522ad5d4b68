using System.Buffers;

namespace Proxy.Http.Http2.Translation;

/// <summary>
/// Collects the decoded fields of one HTTP/2 request header section and writes them as an HTTP/1.1 request head
/// (request line, Host from :authority, the regular fields, one joined cookie field, chunked framing when the
/// body has no declared length). The result is parsed by the HTTP/1.1 head parser, so routing, header
/// mutations, telemetry and HTTP/1.1 upstreams see an HTTP/2 request exactly like an HTTP/1.1 one (the
/// normalised form, as HAProxy's HTX does). One instance per stream slot, reused; the buffers are pooled.
/// </summary>
/// <remarks>
/// Validation is RFC 9113 §8.2–§8.3: a malformed section is a stream error (PROTOCOL_ERROR). Stricter than
/// the RFC on purpose: a Host field that differs from :authority is malformed (it would let a client route on
/// one name and reach another), an :authority with userinfo or characters outside an authority's syntax is
/// malformed, and a request with neither :authority nor Host is refused by the HTTP/1.1 parser (400).
/// </remarks>
public sealed class Http2RequestHeadBuilder : IDisposable
{
    private const int PseudoMethod = 0;
    private const int PseudoScheme = 1;
    private const int PseudoAuthority = 2;
    private const int PseudoPath = 3;

    private readonly int _maxBytes;
    private byte[] _fields = [];
    private int _fieldsLength;
    private byte[] _cookie = [];
    private int _cookieLength;
    private byte[] _pseudo = [];
    private int _pseudoLength;
    private byte[] _head = [];
    private int _headLength;
    private readonly int[] _pseudoStart = new int[4];
    private readonly int[] _pseudoLengths = new int[4];
    private int _pseudoSeen;
    private bool _regularSeen;
    private bool _hasContentLength;
    private int _hostStart = -1;
    private int _hostLength;
    private Http2FieldError _error;

    /// <param name="maxBytes">Upper bound of the translated head (request line and fields), e.g. the HTTP/1.1 parser's limits.</param>
    public Http2RequestHeadBuilder(int maxBytes = 64 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 64);
        _maxBytes = maxBytes;
    }

    /// <summary>The first error seen, or <see cref="Http2FieldError.None"/>.</summary>
    public Http2FieldError Error => _error;

    /// <summary>The :method (valid after <see cref="Complete"/>).</summary>
    public ReadOnlySpan<byte> Method => Pseudo(PseudoMethod);

    /// <summary>The :scheme (empty for CONNECT).</summary>
    public ReadOnlySpan<byte> Scheme => Pseudo(PseudoScheme);

    /// <summary>The :authority, empty when absent.</summary>
    public ReadOnlySpan<byte> Authority => Pseudo(PseudoAuthority);

    /// <summary>The :path (empty for CONNECT).</summary>
    public ReadOnlySpan<byte> Path => Pseudo(PseudoPath);

    /// <summary>A content-length field was present.</summary>
    public bool HasContentLength => _hasContentLength;

    /// <summary>The declared content-length; -1 when absent or not a plain decimal (the HTTP/1.1 parser then refuses it).</summary>
    public long ContentLength { get; private set; } = -1;

    /// <summary>The translated head after a successful <see cref="Complete"/>.</summary>
    public ReadOnlyMemory<byte> Head => _head.AsMemory(0, _headLength);

    /// <summary>Forgets the previous request (buffers kept).</summary>
    public void Reset()
    {
        _fieldsLength = 0;
        _cookieLength = 0;
        _pseudoLength = 0;
        _headLength = 0;
        _pseudoSeen = 0;
        _regularSeen = false;
        _hasContentLength = false;
        ContentLength = -1;
        _hostStart = -1;
        _hostLength = 0;
        _error = Http2FieldError.None;
    }

    /// <summary>
    /// Adds one decoded field. After the first error the rest of the section is ignored (the decoder must still
    /// consume it to keep its table in step); <see cref="Error"/> tells which.
    /// </summary>
    public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (_error != Http2FieldError.None)
        {
            return;
        }

        if (!name.IsEmpty && name[0] == (byte)':')
        {
            _error = AddPseudo(name, value);
            return;
        }

        _regularSeen = true;
        var error = Http2FieldCheck.CheckRegular(name, value);
        if (error != Http2FieldError.None)
        {
            _error = error;
            return;
        }

        if (name.SequenceEqual("cookie"u8))
        {
            // RFC 9113 §8.2.3: cookie crumbs are joined with "; " before HTTP/1.1 sees them.
            if (!AppendCookie(value))
            {
                _error = Http2FieldError.TooLarge;
            }

            return;
        }

        if (name.SequenceEqual("host"u8))
        {
            if (_hostStart >= 0)
            {
                // Two Host fields: the HTTP/1.1 parser would refuse them too; say so here.
                _error = Http2FieldError.HostMismatch;
                return;
            }

            _hostStart = _fieldsLength + name.Length + 2;
            _hostLength = value.Length;
        }
        else if (name.SequenceEqual("content-length"u8))
        {
            ContentLength = !_hasContentLength && System.Buffers.Text.Utf8Parser.TryParse(value, out long length, out var used) && used == value.Length && length >= 0 ? length : -1;
            _hasContentLength = true;
        }

        if (!AppendLine(ref _fields, ref _fieldsLength, name, value))
        {
            _error = Http2FieldError.TooLarge;
        }
    }

    /// <summary>
    /// Checks the required pseudo-headers and writes the HTTP/1.1 head into <see cref="Head"/>.
    /// <paramref name="hasBody"/> false when HEADERS carried END_STREAM; a body without content-length is
    /// framed chunked.
    /// </summary>
    public Http2FieldError Complete(bool hasBody)
    {
        if (_error != Http2FieldError.None)
        {
            return _error;
        }

        _error = CompleteCore(hasBody);
        return _error;
    }

    public void Dispose()
    {
        Return(ref _fields);
        Return(ref _cookie);
        Return(ref _pseudo);
        Return(ref _head);
        _fieldsLength = _cookieLength = _pseudoLength = _headLength = 0;
    }

    private Http2FieldError CompleteCore(bool hasBody)
    {
        if ((_pseudoSeen & (1 << PseudoMethod)) == 0)
        {
            return Http2FieldError.MissingPseudoHeader;
        }

        var method = Method;
        var isConnect = method.SequenceEqual("CONNECT"u8);
        if (isConnect)
        {
            // RFC 9113 §8.5: :authority only; :scheme and :path are omitted.
            if ((_pseudoSeen & (1 << PseudoAuthority)) == 0 || (_pseudoSeen & ((1 << PseudoScheme) | (1 << PseudoPath))) != 0)
            {
                return Http2FieldError.MissingPseudoHeader;
            }
        }
        else
        {
            if ((_pseudoSeen & ((1 << PseudoScheme) | (1 << PseudoPath))) != ((1 << PseudoScheme) | (1 << PseudoPath)))
            {
                return Http2FieldError.MissingPseudoHeader;
            }

            var path = Path;
            if (path.IsEmpty || (path[0] != (byte)'/' && !(path.Length == 1 && path[0] == (byte)'*' && method.SequenceEqual("OPTIONS"u8))))
            {
                return Http2FieldError.InvalidPath;
            }
        }

        var authority = Authority;
        var hasAuthority = (_pseudoSeen & (1 << PseudoAuthority)) != 0;
        if (hasAuthority && _hostStart >= 0 && !System.Text.Ascii.EqualsIgnoreCase(_fields.AsSpan(_hostStart, _hostLength), authority))
        {
            return Http2FieldError.HostMismatch;
        }

        // method SP target SP "HTTP/1.1" CRLF [Host: authority CRLF] fields [cookie] [TE: chunked] CRLF
        var target = isConnect ? authority : Path;
        var size = method.Length + 1 + target.Length + 11
            + (hasAuthority ? 6 + authority.Length + 2 : 0)
            + _fieldsLength
            + (_cookieLength > 0 ? 8 + _cookieLength + 2 : 0)
            + (hasBody && !_hasContentLength && !isConnect ? 28 : 0)
            + 2;
        if (size > _maxBytes)
        {
            return Http2FieldError.TooLarge;
        }

        Ensure(ref _head, size);
        var w = _head.AsSpan();
        var n = 0;
        Put(w, ref n, method);
        w[n++] = (byte)' ';
        Put(w, ref n, target);
        Put(w, ref n, " HTTP/1.1\r\n"u8);
        if (hasAuthority)
        {
            Put(w, ref n, "host: "u8);
            Put(w, ref n, authority);
            Put(w, ref n, "\r\n"u8);
        }

        if (hasAuthority && _hostStart >= 0)
        {
            // The Host field equals :authority (checked above): write the fields without it.
            var lineStart = _hostStart - 6;
            var lineEnd = _hostStart + _hostLength + 2;
            Put(w, ref n, _fields.AsSpan(0, lineStart));
            Put(w, ref n, _fields.AsSpan(lineEnd, _fieldsLength - lineEnd));
        }
        else
        {
            Put(w, ref n, _fields.AsSpan(0, _fieldsLength));
        }

        if (_cookieLength > 0)
        {
            Put(w, ref n, "cookie: "u8);
            Put(w, ref n, _cookie.AsSpan(0, _cookieLength));
            Put(w, ref n, "\r\n"u8);
        }

        if (hasBody && !_hasContentLength && !isConnect)
        {
            Put(w, ref n, "transfer-encoding: chunked\r\n"u8);
        }

        Put(w, ref n, "\r\n"u8);
        _headLength = n;
        return Http2FieldError.None;
    }

    private Http2FieldError AddPseudo(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (_regularSeen)
        {
            return Http2FieldError.PseudoHeaderAfterField;
        }

        var index = name switch
        {
            _ when name.SequenceEqual(":method"u8) => PseudoMethod,
            _ when name.SequenceEqual(":scheme"u8) => PseudoScheme,
            _ when name.SequenceEqual(":authority"u8) => PseudoAuthority,
            _ when name.SequenceEqual(":path"u8) => PseudoPath,
            _ => -1,
        };
        if (index < 0)
        {
            // :status (a response's), :protocol (extended CONNECT, not advertised) and anything else.
            return Http2FieldError.UnknownPseudoHeader;
        }

        if ((_pseudoSeen & (1 << index)) != 0)
        {
            return Http2FieldError.DuplicatePseudoHeader;
        }

        if (!Http2FieldCheck.IsValidValue(value))
        {
            return Http2FieldError.InvalidValue;
        }

        var valid = index switch
        {
            PseudoMethod => IsToken(value),
            PseudoScheme => IsToken(value),
            PseudoAuthority => IsAuthority(value),
            _ => IsPathChars(value),
        };
        if (!valid)
        {
            return index == PseudoPath ? Http2FieldError.InvalidPath : Http2FieldError.InvalidValue;
        }

        if (_pseudoLength + value.Length > _maxBytes)
        {
            return Http2FieldError.TooLarge;
        }

        Ensure(ref _pseudo, _pseudoLength + value.Length);
        value.CopyTo(_pseudo.AsSpan(_pseudoLength));
        _pseudoStart[index] = _pseudoLength;
        _pseudoLengths[index] = value.Length;
        _pseudoLength += value.Length;
        _pseudoSeen |= 1 << index;
        return Http2FieldError.None;
    }

    private ReadOnlySpan<byte> Pseudo(int index) =>
        (_pseudoSeen & (1 << index)) == 0 ? default : _pseudo.AsSpan(_pseudoStart[index], _pseudoLengths[index]);

    private bool AppendLine(ref byte[] buffer, ref int length, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        var needed = length + name.Length + 2 + value.Length + 2;
        if (needed > _maxBytes)
        {
            return false;
        }

        Ensure(ref buffer, needed);
        var w = buffer.AsSpan();
        Put(w, ref length, name);
        Put(w, ref length, ": "u8);
        Put(w, ref length, value);
        Put(w, ref length, "\r\n"u8);
        return true;
    }

    private bool AppendCookie(ReadOnlySpan<byte> value)
    {
        var separator = _cookieLength > 0 ? 2 : 0;
        var needed = _cookieLength + separator + value.Length;
        if (needed > _maxBytes)
        {
            return false;
        }

        Ensure(ref _cookie, needed);
        var w = _cookie.AsSpan();
        if (separator > 0)
        {
            Put(w, ref _cookieLength, "; "u8);
        }

        Put(w, ref _cookieLength, value);
        return true;
    }

    private static void Put(Span<byte> destination, ref int offset, ReadOnlySpan<byte> source)
    {
        source.CopyTo(destination[offset..]);
        offset += source.Length;
    }

    private static void Ensure(ref byte[] buffer, int size)
    {
        if (buffer.Length >= size)
        {
            return;
        }

        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(size, Math.Max(256, buffer.Length * 2)));
        buffer.CopyTo(bigger, 0);
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        buffer = bigger;
    }

    private static void Return(ref byte[] buffer)
    {
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        buffer = [];
    }

    private static bool IsToken(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            return false;
        }

        foreach (var b in value)
        {
            // RFC 9110 tchar: method and scheme tokens may hold uppercase letters.
            var ok = b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
                || "!#$%&'*+-.^_`|~"u8.Contains(b);
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsAuthority(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            return false;
        }

        foreach (var b in value)
        {
            // RFC 3986 host [":" port] characters: unreserved, sub-delims, ':', '[', ']', '%'. No userinfo ('@',
            // forbidden for http/https by RFC 9113 §8.3.1), no whitespace, no '/', '?', '#'.
            var ok = b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
                || "-._~!$&'()*+,;=:[]%"u8.Contains(b);
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsPathChars(ReadOnlySpan<byte> value)
    {
        foreach (var b in value)
        {
            // Visible ASCII only: a space or control byte would break the HTTP/1.1 request line.
            if (b is <= 0x20 or >= 0x7f)
            {
                return false;
            }
        }

        return true;
    }
}

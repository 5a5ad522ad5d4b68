using System.Runtime.CompilerServices;

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// The static table (RFC 7541 Appendix A), indices 1..61. Lookups by name and by (name, value) for the encoder scan
/// only the entries whose name has the same length (at most a handful), so they need no hashing and allocate nothing.
/// </summary>
public static class HpackStaticTable
{
    /// <summary>Number of entries; dynamic table indices start at <c>Count + 1</c>.</summary>
    public const int Count = 61;

    /// <summary>Index of <c>:authority</c>.</summary>
    public const int Authority = 1;
    /// <summary>Index of <c>:method: GET</c>.</summary>
    public const int MethodGet = 2;
    /// <summary>Index of <c>:method: POST</c>.</summary>
    public const int MethodPost = 3;
    /// <summary>Index of <c>:path: /</c>.</summary>
    public const int PathSlash = 4;
    /// <summary>Index of <c>:scheme: http</c>.</summary>
    public const int SchemeHttp = 6;
    /// <summary>Index of <c>:scheme: https</c>.</summary>
    public const int SchemeHttps = 7;
    /// <summary>Index of <c>:status: 200</c>.</summary>
    public const int Status200 = 8;
    /// <summary>Index of <c>content-length</c>.</summary>
    public const int ContentLength = 28;
    /// <summary>Index of <c>cookie</c>.</summary>
    public const int Cookie = 32;

    private static readonly byte[][] s_names =
    [
        [],
        ":authority"u8.ToArray(), ":method"u8.ToArray(), ":method"u8.ToArray(), ":path"u8.ToArray(), ":path"u8.ToArray(),
        ":scheme"u8.ToArray(), ":scheme"u8.ToArray(), ":status"u8.ToArray(), ":status"u8.ToArray(), ":status"u8.ToArray(),
        ":status"u8.ToArray(), ":status"u8.ToArray(), ":status"u8.ToArray(), ":status"u8.ToArray(),
        "accept-charset"u8.ToArray(), "accept-encoding"u8.ToArray(), "accept-language"u8.ToArray(), "accept-ranges"u8.ToArray(),
        "accept"u8.ToArray(), "access-control-allow-origin"u8.ToArray(), "age"u8.ToArray(), "allow"u8.ToArray(),
        "authorization"u8.ToArray(), "cache-control"u8.ToArray(), "content-disposition"u8.ToArray(), "content-encoding"u8.ToArray(),
        "content-language"u8.ToArray(), "content-length"u8.ToArray(), "content-location"u8.ToArray(), "content-range"u8.ToArray(),
        "content-type"u8.ToArray(), "cookie"u8.ToArray(), "date"u8.ToArray(), "etag"u8.ToArray(), "expect"u8.ToArray(),
        "expires"u8.ToArray(), "from"u8.ToArray(), "host"u8.ToArray(), "if-match"u8.ToArray(), "if-modified-since"u8.ToArray(),
        "if-none-match"u8.ToArray(), "if-range"u8.ToArray(), "if-unmodified-since"u8.ToArray(), "last-modified"u8.ToArray(),
        "link"u8.ToArray(), "location"u8.ToArray(), "max-forwards"u8.ToArray(), "proxy-authenticate"u8.ToArray(),
        "proxy-authorization"u8.ToArray(), "range"u8.ToArray(), "referer"u8.ToArray(), "refresh"u8.ToArray(),
        "retry-after"u8.ToArray(), "server"u8.ToArray(), "set-cookie"u8.ToArray(), "strict-transport-security"u8.ToArray(),
        "transfer-encoding"u8.ToArray(), "user-agent"u8.ToArray(), "vary"u8.ToArray(), "via"u8.ToArray(), "www-authenticate"u8.ToArray(),
    ];

    private static readonly byte[][] s_values = BuildValues();

    // For each name length, the first static index with a name of that length and the chain to the next one.
    private static readonly sbyte[] s_firstByLength = new sbyte[32];
    private static readonly sbyte[] s_nextSameLength = BuildLengthChains();

    /// <summary>Name of static entry <paramref name="index"/> (1..61).</summary>
    public static ReadOnlySpan<byte> Name(int index) => s_names[index];

    /// <summary>Value of static entry <paramref name="index"/> (1..61); empty for name-only entries.</summary>
    public static ReadOnlySpan<byte> Value(int index) => s_values[index];

    /// <summary>True when <paramref name="index"/> is a static index (1..61).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsStatic(int index) => (uint)(index - 1) < Count;

    /// <summary>
    /// Finds <paramref name="name"/>: returns the index of an entry with the same name and value when there is one
    /// (<paramref name="fullMatch"/> true), otherwise the first entry with the name, otherwise 0.
    /// </summary>
    public static int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out bool fullMatch)
    {
        fullMatch = false;
        if ((uint)name.Length >= (uint)s_firstByLength.Length)
        {
            return 0;
        }

        var nameIndex = 0;
        for (int i = s_firstByLength[name.Length]; i > 0; i = s_nextSameLength[i])
        {
            var entryName = s_names[i];
            if (!name.SequenceEqual(entryName))
            {
                continue;
            }

            if (nameIndex == 0)
            {
                nameIndex = i;
            }

            if (value.SequenceEqual(s_values[i]))
            {
                fullMatch = true;
                return i;
            }

            // Entries with one name are consecutive in the table.
            if (i + 1 > Count || !s_names[i + 1].AsSpan().SequenceEqual(entryName))
            {
                break;
            }
        }

        return nameIndex;
    }

    private static byte[][] BuildValues()
    {
        var values = new byte[Count + 1][];
        Array.Fill(values, []);
        values[2] = "GET"u8.ToArray();
        values[3] = "POST"u8.ToArray();
        values[4] = "/"u8.ToArray();
        values[5] = "/index.html"u8.ToArray();
        values[6] = "http"u8.ToArray();
        values[7] = "https"u8.ToArray();
        values[8] = "200"u8.ToArray();
        values[9] = "204"u8.ToArray();
        values[10] = "206"u8.ToArray();
        values[11] = "304"u8.ToArray();
        values[12] = "400"u8.ToArray();
        values[13] = "404"u8.ToArray();
        values[14] = "500"u8.ToArray();
        values[16] = "gzip, deflate"u8.ToArray();
        return values;
    }

    private static sbyte[] BuildLengthChains()
    {
        var next = new sbyte[Count + 1];
        // Walk backwards so each chain lists indices in ascending order.
        for (var i = Count; i >= 1; i--)
        {
            var length = s_names[i].Length;
            next[i] = s_firstByLength[length];
            s_firstByLength[length] = (sbyte)i;
        }

        return next;
    }
}

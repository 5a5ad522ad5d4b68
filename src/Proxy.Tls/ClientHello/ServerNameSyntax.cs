namespace Proxy.Tls.ClientHello;

/// <summary>
/// What an SNI host_name must look like (RFC 6066 3: a DNS hostname in ASCII, no trailing dot): dot-separated labels
/// of 1..63 characters, letters, digits, '-' (not first or last in a label) and '_' (seen in real internal names, so
/// tolerated), 253 characters at most. IP literals in dotted form pass as labels of digits; nothing else does.
/// </summary>
public static class ServerNameSyntax
{
    /// <summary>Longest DNS name in text form.</summary>
    public const int MaxLength = 253;

    private const int MaxLabel = 63;

    public static bool IsValid(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || name.Length > MaxLength)
        {
            return false;
        }

        var labelStart = 0;
        for (var i = 0; i <= name.Length; i++)
        {
            if (i == name.Length || name[i] == (byte)'.')
            {
                var length = i - labelStart;
                if (length == 0 || length > MaxLabel || name[labelStart] == (byte)'-' || name[i - 1] == (byte)'-')
                {
                    return false;
                }

                labelStart = i + 1;
                continue;
            }

            var c = name[i];
            if (!((uint)((c | 0x20) - 'a') <= 'z' - 'a' || (uint)(c - '0') <= 9 || c == (byte)'-' || c == (byte)'_'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>ASCII lower-case copy; returns the length (destination must be at least as long as <paramref name="name"/>).</summary>
    public static int ToLower(ReadOnlySpan<byte> name, Span<byte> destination)
    {
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            destination[i] = (uint)(c - 'A') <= 'Z' - 'A' ? (byte)(c | 0x20) : c;
        }

        return name.Length;
    }

    /// <summary>ASCII lower-case copy as chars; returns the length.</summary>
    public static int ToLower(ReadOnlySpan<byte> name, Span<char> destination)
    {
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            destination[i] = (char)((uint)(c - 'A') <= 'Z' - 'A' ? c | 0x20 : c);
        }

        return name.Length;
    }

    /// <summary>Whether <paramref name="pattern"/> is a DNS name or <c>*.</c> followed by one (a server-name route).</summary>
    public static bool IsValidPattern(string? pattern)
    {
        if (string.IsNullOrEmpty(pattern) || pattern.Length > MaxLength || !System.Text.Ascii.IsValid(pattern))
        {
            return false;
        }

        var name = pattern.StartsWith("*.", StringComparison.Ordinal) ? pattern.AsSpan(2) : pattern.AsSpan();
        Span<byte> bytes = stackalloc byte[MaxLength];
        var n = System.Text.Encoding.ASCII.GetBytes(name, bytes);
        return IsValid(bytes[..n]);
    }
}

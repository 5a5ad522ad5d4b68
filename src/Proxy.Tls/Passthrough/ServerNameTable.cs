using Proxy.Tls.ClientHello;

namespace Proxy.Tls.Passthrough;

/// <summary>
/// Server-name patterns to values, as Envoy's <c>filter_chain_match.server_names</c>: exact names (<c>api.example.com</c>)
/// and wildcards (<c>*.example.com</c>, any name with at least one more label in front, at any depth). Case-insensitive
/// (patterns are lower-cased when built, names when matched). Most specific wins: an exact name, then the wildcard
/// with the longest suffix (<c>*.b.example.com</c> before <c>*.example.com</c>).
/// <para>Matching does not allocate: the lower-cased name lives on the stack and the dictionaries are searched through
/// span lookups; at most one probe per label.</para>
/// </summary>
public sealed class ServerNameTable<T>
    where T : class
{
    private readonly Dictionary<string, T> _exact = new(StringComparer.Ordinal);

    // Keyed by the suffix with its leading dot: "*.example.com" -> ".example.com".
    private readonly Dictionary<string, T> _wildcard = new(StringComparer.Ordinal);

    /// <exception cref="ArgumentException">A pattern is not a valid name or wildcard, or appears twice.</exception>
    public ServerNameTable(IEnumerable<KeyValuePair<string, T>> patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        foreach (var (pattern, value) in patterns)
        {
            if (!ServerNameSyntax.IsValidPattern(pattern))
            {
                throw new ArgumentException($"\"{pattern}\" is not a server name or *.suffix wildcard", nameof(patterns));
            }

            var lower = pattern.ToLowerInvariant();
            var added = lower.StartsWith("*.", StringComparison.Ordinal) ? _wildcard.TryAdd(lower[1..], value) : _exact.TryAdd(lower, value);
            if (!added)
            {
                throw new ArgumentException($"server name \"{pattern}\" is listed twice", nameof(patterns));
            }
        }
    }

    public int Count => _exact.Count + _wildcard.Count;

    /// <summary>The value for <paramref name="serverName"/> (any case), and the pattern that matched.</summary>
    public bool TryMatch(ReadOnlySpan<char> serverName, out T? value)
    {
        value = null;
        if (serverName.IsEmpty || serverName.Length > ServerNameSyntax.MaxLength)
        {
            return false;
        }

        Span<char> lower = stackalloc char[ServerNameSyntax.MaxLength];
        var n = serverName.ToLowerInvariant(lower);
        var name = lower[..n];
        if (_exact.Count != 0 && _exact.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out value))
        {
            return true;
        }

        if (_wildcard.Count == 0)
        {
            return false;
        }

        var wildcards = _wildcard.GetAlternateLookup<ReadOnlySpan<char>>();

        // Suffixes from the longest (most specific) down; each keeps at least one label in front of it.
        for (var dot = name.IndexOf('.'); dot > 0; )
        {
            if (wildcards.TryGetValue(name[dot..], out value))
            {
                return true;
            }

            var next = name[(dot + 1)..].IndexOf('.');
            dot = next < 0 ? -1 : dot + 1 + next;
        }

        value = null;
        return false;
    }
}

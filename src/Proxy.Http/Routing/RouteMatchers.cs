using Proxy.Core.Configuration;
using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using Proxy.Http.Http1;

namespace Proxy.Http.Routing;

/// <summary>Compiled host condition: exact names, <c>*.suffix</c> wildcards, or <c>*</c>.</summary>
internal sealed class HostMatcher
{
    private readonly byte[][] _exact;
    private readonly byte[][] _suffixes; // ".example.com" for "*.example.com"
    private readonly bool _any;

    public HostMatcher(IReadOnlyList<string> hosts)
    {
        var exact = new List<byte[]>();
        var suffixes = new List<byte[]>();
        foreach (var h in hosts)
        {
            if (h == "*")
            {
                _any = true;
            }
            else if (h.StartsWith("*.", StringComparison.Ordinal))
            {
                suffixes.Add(Encoding.ASCII.GetBytes(h[1..].ToLowerInvariant()));
            }
            else
            {
                exact.Add(RequestView.StripPort(Encoding.ASCII.GetBytes(h.ToLowerInvariant())).ToArray());
            }
        }

        _any |= hosts.Count == 0;
        _exact = [.. exact];
        _suffixes = [.. suffixes];
    }

    public bool Matches(ReadOnlySpan<byte> host)
    {
        if (_any)
        {
            return true;
        }

        foreach (var e in _exact)
        {
            if (e.Length == host.Length && Ascii.EqualsIgnoreCase(e, host))
            {
                return true;
            }
        }

        foreach (var s in _suffixes)
        {
            // At least one character must stand for the '*'.
            if (host.Length > s.Length && Ascii.EqualsIgnoreCase(s, host[^s.Length..]))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>Compiled path condition.</summary>
internal sealed class PathMatcher
{
    private const int StackLimit = 256;
    private readonly PathMatchKind _kind;
    private readonly byte[] _value;
    private readonly bool _ignoreCase;
    private readonly Regex? _regex;

    public PathMatcher(PathMatchConfig config)
    {
        _kind = config.Kind;
        _ignoreCase = config.IgnoreCase;
        _value = Encoding.ASCII.GetBytes(config.Value);
        if (config.Kind == PathMatchKind.Regex)
        {
            _regex = CreateRegex(config.Value, config.IgnoreCase);
        }
    }

    /// <summary>Anchored, non-backtracking (linear time whatever the input: no ReDoS from a crafted path).</summary>
    internal static Regex CreateRegex(string pattern, bool ignoreCase) => RouteRegex.Create(pattern, ignoreCase);

    public bool Matches(ReadOnlySpan<byte> path) => _kind switch
    {
        PathMatchKind.Exact => path.Length == _value.Length && Equal(path, _value),
        PathMatchKind.Prefix => path.Length >= _value.Length && Equal(path[.._value.Length], _value),
        PathMatchKind.SegmentPrefix => path.Length >= _value.Length && Equal(path[.._value.Length], _value)
            && (path.Length == _value.Length || path[_value.Length] == (byte)'/' || (_value.Length > 0 && _value[^1] == (byte)'/')),
        _ => RegexMatches(_regex!, path),
    };

    private bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => _ignoreCase ? Ascii.EqualsIgnoreCase(a, b) : a.SequenceEqual(b);

    /// <summary>Matches bytes against a regex through a char copy (stack for short input, pooled otherwise).</summary>
    internal static bool RegexMatches(Regex regex, ReadOnlySpan<byte> bytes)
    {
        char[]? rented = null;
        var chars = bytes.Length <= StackLimit ? stackalloc char[StackLimit] : (rented = ArrayPool<char>.Shared.Rent(bytes.Length));
        try
        {
            // Latin-1 widening never fails and maps every byte to one char (targets and field values are ASCII/obs-text).
            var n = Encoding.Latin1.GetChars(bytes, chars);
            return regex.IsMatch(chars[..n]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }
}

/// <summary>Compiled method set: a bit per known method plus the raw bytes of other methods.</summary>
internal sealed class MethodMatcher
{
    private readonly uint _known;
    private readonly byte[][] _other;

    public MethodMatcher(IReadOnlyList<string> methods)
    {
        var other = new List<byte[]>();
        foreach (var m in methods)
        {
            if (TryKnown(m, out var known))
            {
                _known |= 1u << (int)known;
            }
            else
            {
                other.Add(Encoding.ASCII.GetBytes(m));
            }
        }

        _other = [.. other];
        IsAny = methods.Count == 0;
    }

    public bool IsAny { get; }

    public bool Matches(Http1RequestHead head)
    {
        if (IsAny || (head.Method != Http1Method.Other && (_known & (1u << (int)head.Method)) != 0))
        {
            return true;
        }

        if (head.Method == Http1Method.Other)
        {
            var bytes = head.MethodBytes;
            foreach (var o in _other)
            {
                if (bytes.SequenceEqual(o))
                {
                    return true;
                }
            }
        }

        return false;
    }

    private static bool TryKnown(string method, out Http1Method known)
    {
        known = method switch
        {
            "GET" => Http1Method.Get,
            "HEAD" => Http1Method.Head,
            "POST" => Http1Method.Post,
            "PUT" => Http1Method.Put,
            "DELETE" => Http1Method.Delete,
            "CONNECT" => Http1Method.Connect,
            "OPTIONS" => Http1Method.Options,
            "TRACE" => Http1Method.Trace,
            "PATCH" => Http1Method.Patch,
            _ => Http1Method.Other,
        };
        return known != Http1Method.Other;
    }
}

/// <summary>Compiled header condition.</summary>
internal sealed class HeaderMatcher
{
    private readonly byte[] _name;
    private readonly HeaderMatchKind _kind;
    private readonly byte[] _value;
    private readonly Regex? _regex;

    public HeaderMatcher(HeaderMatchConfig config)
    {
        _name = Encoding.ASCII.GetBytes(config.Name);
        _kind = config.Kind;
        _value = Encoding.Latin1.GetBytes(config.Value);
        if (config.Kind == HeaderMatchKind.Regex)
        {
            _regex = PathMatcher.CreateRegex(config.Value, ignoreCase: false);
        }
    }

    public bool Matches(Http1HeaderList headers)
    {
        var i = headers.IndexOf(_name);
        if (_kind == HeaderMatchKind.Absent)
        {
            return i < 0;
        }

        for (; i >= 0; i = headers.IndexOf(_name, i + 1))
        {
            if (ValueMatches(headers.GetValue(i)))
            {
                return true;
            }
        }

        return false;
    }

    private bool ValueMatches(ReadOnlySpan<byte> value) => _kind switch
    {
        HeaderMatchKind.Present => true,
        HeaderMatchKind.Exact => value.SequenceEqual(_value),
        HeaderMatchKind.Prefix => value.StartsWith(_value),
        _ => PathMatcher.RegexMatches(_regex!, value),
    };
}

/// <summary>Compiled query parameter condition over the raw query (no percent-decoding).</summary>
internal sealed class QueryMatcher
{
    private readonly byte[] _name;
    private readonly QueryMatchKind _kind;
    private readonly byte[] _value;

    public QueryMatcher(QueryMatchConfig config)
    {
        _name = Encoding.ASCII.GetBytes(config.Name);
        _kind = config.Kind;
        _value = Encoding.ASCII.GetBytes(config.Value);
    }

    public bool Matches(ReadOnlySpan<byte> query)
    {
        var reader = new QueryReader(query);
        while (reader.Next(out var name, out var value))
        {
            if (name.SequenceEqual(_name) && (_kind == QueryMatchKind.Present || value.SequenceEqual(_value)))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// Walks <c>a=1&amp;b&amp;a=2</c> as (a, 1), (b, empty), (a, 2) without allocating. Empty pieces
/// (<c>&amp;&amp;</c>, a trailing <c>&amp;</c>) are skipped; a fragment (<c>#</c>) ends the query.
/// </summary>
public ref struct QueryReader
{
    private ReadOnlySpan<byte> _rest;

    public QueryReader(ReadOnlySpan<byte> query)
    {
        var hash = query.IndexOf((byte)'#');
        _rest = hash < 0 ? query : query[..hash];
    }

    public bool Next(out ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
    {
        while (!_rest.IsEmpty)
        {
            var amp = _rest.IndexOf((byte)'&');
            var piece = amp < 0 ? _rest : _rest[..amp];
            _rest = amp < 0 ? default : _rest[(amp + 1)..];
            if (piece.IsEmpty)
            {
                continue;
            }

            var eq = piece.IndexOf((byte)'=');
            name = eq < 0 ? piece : piece[..eq];
            value = eq < 0 ? default : piece[(eq + 1)..];
            return true;
        }

        name = default;
        value = default;
        return false;
    }
}

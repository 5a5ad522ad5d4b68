using System.Text;

namespace Proxy.Http.Http1;

/// <summary>
/// The header fields of one parsed head, kept as byte ranges into the head buffer (no strings). Owned by a
/// per-connection <see cref="Http1RequestHead"/> or <see cref="Http1ResponseHead"/> and reused for every
/// message; spans it returns are valid until the caller advances its PipeReader past the head.
/// </summary>
public sealed class Http1HeaderList
{
    // Allocated on the first field: a session holds four lists (two heads, two trailer sections) and most
    // connections never see a trailer.
    private Field[] _fields = [];
    private int _count;
    private ReadOnlyMemory<byte> _source;

    /// <summary>Number of fields, in wire order.</summary>
    public int Count => _count;

    /// <summary>Field name as sent (case preserved).</summary>
    public ReadOnlySpan<byte> GetName(int index)
    {
        ref readonly var f = ref Get(index);
        return _source.Span.Slice(f.NameStart, f.NameLength);
    }

    /// <summary>Field value without surrounding whitespace.</summary>
    public ReadOnlySpan<byte> GetValue(int index)
    {
        ref readonly var f = ref Get(index);
        return _source.Span.Slice(f.ValueStart, f.ValueLength);
    }

    /// <summary>Which interpreted field this is, if any.</summary>
    public Http1KnownHeader GetKnown(int index) => Get(index).Known;

    /// <summary>
    /// True for fields a proxy must not forward: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
    /// Transfer-Encoding, Upgrade and any field named in Connection (except Host and Content-Length,
    /// which a client must not be able to strip: dropping Content-Length while forwarding the body would
    /// desynchronize the upstream connection).
    /// </summary>
    public bool IsHopByHop(int index) => Get(index).HopByHop;

    /// <summary>Index of the first field named <paramref name="name"/> (ASCII case-insensitive), or -1.</summary>
    public int IndexOf(ReadOnlySpan<byte> name, int start = 0)
    {
        var source = _source.Span;
        for (var i = start; i < _count; i++)
        {
            ref readonly var f = ref _fields[i];
            if (f.NameLength == name.Length && Ascii.EqualsIgnoreCase(source.Slice(f.NameStart, f.NameLength), name))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Value of the first field named <paramref name="name"/>.</summary>
    public bool TryGetValue(ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
    {
        var i = IndexOf(name);
        value = i < 0 ? default : GetValue(i);
        return i >= 0;
    }

    /// <summary>Index of the first field of kind <paramref name="known"/>, or -1.</summary>
    public int IndexOf(Http1KnownHeader known)
    {
        for (var i = 0; i < _count; i++)
        {
            if (_fields[i].Known == known)
            {
                return i;
            }
        }

        return -1;
    }

    internal ReadOnlyMemory<byte> Source => _source;

    internal void Reset(ReadOnlyMemory<byte> source)
    {
        _source = source;
        _count = 0;
    }

    internal void Add(int nameStart, int nameLength, int valueStart, int valueLength, Http1KnownHeader known)
    {
        if (_count == _fields.Length)
        {
            // Grows once per connection at most a few times (bounded by MaxHeaderCount), then reused.
            Array.Resize(ref _fields, Math.Max(16, _fields.Length * 2));
        }

        _fields[_count++] = new Field(nameStart, nameLength, valueStart, valueLength, known, Http1Syntax.IsHopByHop(known));
    }

    /// <summary>Marks every field named by a token of the Connection fields as hop-by-hop (RFC 9110 §7.6.1).</summary>
    internal void MarkConnectionNominated()
    {
        var source = _source.Span;
        for (var c = 0; c < _count; c++)
        {
            if (_fields[c].Known != Http1KnownHeader.Connection)
            {
                continue;
            }

            var list = source.Slice(_fields[c].ValueStart, _fields[c].ValueLength);
            while (Http1Syntax.NextListElement(ref list, out var token))
            {
                if (token.IsEmpty)
                {
                    continue;
                }

                for (var i = 0; i < _count; i++)
                {
                    ref var f = ref _fields[i];
                    if (f.HopByHop || f.Known is Http1KnownHeader.Host or Http1KnownHeader.ContentLength)
                    {
                        continue;
                    }

                    if (f.NameLength == token.Length && Ascii.EqualsIgnoreCase(source.Slice(f.NameStart, f.NameLength), token))
                    {
                        f.HopByHop = true;
                    }
                }
            }
        }
    }

    private ref readonly Field Get(int index)
    {
        if ((uint)index >= (uint)_count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }

        return ref _fields[index];
    }

    private struct Field(int nameStart, int nameLength, int valueStart, int valueLength, Http1KnownHeader known, bool hopByHop)
    {
        public readonly int NameStart = nameStart;
        public readonly int NameLength = nameLength;
        public readonly int ValueStart = valueStart;
        public readonly int ValueLength = valueLength;
        public readonly Http1KnownHeader Known = known;
        public bool HopByHop = hopByHop;
    }
}

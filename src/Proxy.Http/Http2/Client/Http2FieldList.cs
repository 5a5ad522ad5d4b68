using System.Buffers;

namespace Proxy.Http.Http2.Client;

/// <summary>
/// An ordered list of header fields kept as bytes (names and values copied into one pooled buffer): the request
/// fields a caller hands to <see cref="Http2ClientStream.WriteHeadersAsync"/>, and the response fields and trailers
/// the connection decodes. Reusable (<see cref="Clear"/>): once grown it adds fields without allocating. Return the
/// buffers with <see cref="Dispose"/>.
/// </summary>
public sealed class Http2FieldList : IDisposable
{
    private byte[] _bytes;
    private Entry[] _entries;
    private int _used;
    private int _count;

    /// <summary>Creates an empty list.</summary>
    public Http2FieldList()
    {
        _bytes = ArrayPool<byte>.Shared.Rent(512);
        _entries = ArrayPool<Entry>.Shared.Rent(16);
    }

    /// <summary>Number of fields.</summary>
    public int Count => _count;

    /// <summary>RFC 9113 §6.5.2 size: name + value + 32 per field.</summary>
    public long HeaderListSize { get; private set; }

    /// <summary>Name of field <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> GetName(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)_count, nameof(index));
        var e = _entries[index];
        return _bytes.AsSpan(e.Start, e.NameLength);
    }

    /// <summary>Value of field <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> GetValue(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)_count, nameof(index));
        var e = _entries[index];
        return _bytes.AsSpan(e.Start + e.NameLength, e.ValueLength);
    }

    /// <summary>Value of the first field named <paramref name="name"/> (exact bytes; names are lowercase in HTTP/2).</summary>
    public bool TryGetValue(ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
    {
        for (var i = 0; i < _count; i++)
        {
            if (GetName(i).SequenceEqual(name))
            {
                value = GetValue(i);
                return true;
            }
        }

        value = default;
        return false;
    }

    /// <summary>Appends a field (copied).</summary>
    public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        var needed = name.Length + value.Length;
        if (_bytes.Length - _used < needed)
        {
            Grow(ref _bytes, _used, _used + needed);
        }

        if (_count == _entries.Length)
        {
            Grow(ref _entries, _count, _count + 1);
        }

        name.CopyTo(_bytes.AsSpan(_used));
        value.CopyTo(_bytes.AsSpan(_used + name.Length));
        _entries[_count++] = new Entry(_used, name.Length, value.Length);
        _used += needed;
        HeaderListSize += needed + 32;
    }

    /// <summary>Forgets every field, keeping the buffers.</summary>
    public void Clear()
    {
        _count = 0;
        _used = 0;
        HeaderListSize = 0;
    }

    /// <summary>Returns the pooled buffers; the list is unusable afterwards.</summary>
    public void Dispose()
    {
        var bytes = Interlocked.Exchange(ref _bytes, []);
        var entries = Interlocked.Exchange(ref _entries, []);
        if (bytes.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }

        if (entries.Length > 0)
        {
            ArrayPool<Entry>.Shared.Return(entries);
        }

        _count = 0;
        _used = 0;
    }

    private static void Grow<T>(ref T[] array, int used, int minimum)
    {
        var next = ArrayPool<T>.Shared.Rent(Math.Max(minimum, array.Length * 2));
        array.AsSpan(0, used).CopyTo(next);
        if (array.Length > 0)
        {
            ArrayPool<T>.Shared.Return(array);
        }

        array = next;
    }

    private readonly record struct Entry(int Start, int NameLength, int ValueLength);
}

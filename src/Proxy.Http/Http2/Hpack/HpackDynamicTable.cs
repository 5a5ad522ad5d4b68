using System.Diagnostics;

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// The dynamic table (RFC 7541 §2.3.2, §4): a ring of entry descriptors whose name and value bytes live in one byte
/// buffer of <see cref="Capacity"/> bytes (the largest size the table may ever have). Entries are copied in once and
/// never allocated individually. The bytes of live entries are kept contiguous, oldest first; when a new entry does
/// not fit after the newest one, the live bytes are moved to the start of the buffer (at most Capacity bytes, once per
/// Capacity bytes inserted, so the cost per inserted byte stays constant).
/// </summary>
/// <remarks>Index 0 is the newest entry (HPACK index 62), the order RFC 7541 §2.3.3 uses.</remarks>
public sealed class HpackDynamicTable
{
    /// <summary>Per-entry overhead counted by the size (RFC 7541 §4.1).</summary>
    public const int EntryOverhead = 32;

    private byte[] _bytes;
    private Entry[] _entries;
    private int _first;     // ring slot of the oldest entry
    private int _count;
    private int _bytesStart; // offset of the oldest entry's bytes
    private int _bytesEnd;   // offset just after the newest entry's bytes

    /// <summary>Creates a table that can grow to <paramref name="capacity"/> (its initial maximum size too).</summary>
    public HpackDynamicTable(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        Capacity = capacity;
        MaxSize = capacity;
        _bytes = new byte[capacity];
        _entries = new Entry[Math.Max(1, capacity / EntryOverhead)];
    }

    /// <summary>Largest maximum size this table holds buffers for.</summary>
    public int Capacity { get; private set; }

    /// <summary>Current maximum size (the last size update).</summary>
    public int MaxSize { get; private set; }

    /// <summary>Sum of name + value + 32 over the entries.</summary>
    public int Size { get; private set; }

    /// <summary>Number of entries.</summary>
    public int Count => _count;

    /// <summary>Name of entry <paramref name="index"/> (0 = newest).</summary>
    public ReadOnlySpan<byte> Name(int index)
    {
        ref readonly var e = ref At(index);
        return _bytes.AsSpan(e.Offset, e.NameLength);
    }

    /// <summary>Value of entry <paramref name="index"/> (0 = newest).</summary>
    public ReadOnlySpan<byte> Value(int index)
    {
        ref readonly var e = ref At(index);
        return _bytes.AsSpan(e.Offset + e.NameLength, e.ValueLength);
    }

    /// <summary>
    /// Raises <see cref="Capacity"/> (reallocating, keeping the entries). Used when the local
    /// SETTINGS_HEADER_TABLE_SIZE grows, which is rare; never on the per-block path.
    /// </summary>
    public void EnsureCapacity(int capacity)
    {
        if (capacity <= Capacity)
        {
            return;
        }

        var bytes = new byte[capacity];
        var entries = new Entry[Math.Max(1, capacity / EntryOverhead)];
        var offset = 0;
        for (var i = _count - 1; i >= 0; i--)
        {
            var e = At(i);
            _bytes.AsSpan(e.Offset, e.NameLength + e.ValueLength).CopyTo(bytes.AsSpan(offset));
            entries[_count - 1 - i] = new Entry { Offset = offset, NameLength = e.NameLength, ValueLength = e.ValueLength };
            offset += e.NameLength + e.ValueLength;
        }

        _bytes = bytes;
        _entries = entries;
        _first = 0;
        _bytesStart = 0;
        _bytesEnd = offset;
        Capacity = capacity;
    }

    /// <summary>Sets the maximum size, evicting the oldest entries until the table fits (RFC 7541 §4.3).</summary>
    public void SetMaxSize(int maxSize)
    {
        if ((uint)maxSize > (uint)Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(maxSize), maxSize, "above the table's capacity");
        }

        MaxSize = maxSize;
        EvictUntil(maxSize);
    }

    /// <summary>
    /// Adds an entry (RFC 7541 §4.4): evicts the oldest entries until it fits; an entry larger than the maximum size
    /// empties the table and is not added. <paramref name="name"/> may point into this table (an indexed name).
    /// </summary>
    public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        var size = (long)name.Length + value.Length + EntryOverhead;
        if (size > MaxSize)
        {
            Clear();
            return;
        }

        var length = name.Length + value.Length;
        if (_bytes.AsSpan().Overlaps(name) && _count > 0)
        {
            // The name is an older entry's bytes, which eviction or compaction could overwrite: move the new entry's
            // name out of the way first (rare: literal with incremental indexing and a dynamic name index).
            AddWithOwnName(name, value, (int)size);
            return;
        }

        EvictUntil(MaxSize - (int)size);
        var offset = Reserve(length);
        name.CopyTo(_bytes.AsSpan(offset));
        value.CopyTo(_bytes.AsSpan(offset + name.Length));
        Push(offset, name.Length, value.Length, (int)size);
    }

    /// <summary>
    /// Finds an entry equal to (<paramref name="name"/>, <paramref name="value"/>): returns its index (0 = newest)
    /// and sets <paramref name="fullMatch"/>, else the newest entry with the name, else -1.
    /// </summary>
    public int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out bool fullMatch)
    {
        fullMatch = false;
        var nameIndex = -1;
        var bytes = _bytes;
        for (var i = 0; i < _count; i++)
        {
            ref readonly var e = ref At(i);
            // Length checks first: most entries differ in name length, which costs no byte comparison.
            if (e.NameLength != name.Length || !bytes.AsSpan(e.Offset, e.NameLength).SequenceEqual(name))
            {
                continue;
            }

            if (e.ValueLength == value.Length && bytes.AsSpan(e.Offset + e.NameLength, e.ValueLength).SequenceEqual(value))
            {
                fullMatch = true;
                return i;
            }

            if (nameIndex < 0)
            {
                nameIndex = i;
            }
        }

        return nameIndex;
    }

    /// <summary>Removes every entry (keeps the maximum size).</summary>
    public void Clear()
    {
        _count = 0;
        _first = 0;
        _bytesStart = 0;
        _bytesEnd = 0;
        Size = 0;
    }

    private void AddWithOwnName(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int size)
    {
        // Names are short in practice; the pooled copy only happens for this rare representation.
        var rented = System.Buffers.ArrayPool<byte>.Shared.Rent(name.Length);
        try
        {
            name.CopyTo(rented);
            var copy = rented.AsSpan(0, name.Length);
            EvictUntil(MaxSize - size);
            var offset = Reserve(copy.Length + value.Length);
            copy.CopyTo(_bytes.AsSpan(offset));
            value.CopyTo(_bytes.AsSpan(offset + copy.Length));
            Push(offset, copy.Length, value.Length, size);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private ref Entry At(int index)
    {
        if ((uint)index >= (uint)_count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }

        var slot = _first + _count - 1 - index;
        if (slot >= _entries.Length)
        {
            slot -= _entries.Length;
        }

        return ref _entries[slot];
    }

    private void EvictUntil(int targetSize)
    {
        while (Size > targetSize && _count > 0)
        {
            ref readonly var oldest = ref _entries[_first];
            Size -= oldest.NameLength + oldest.ValueLength + EntryOverhead;
            _bytesStart = oldest.Offset + oldest.NameLength + oldest.ValueLength;
            _first++;
            if (_first == _entries.Length)
            {
                _first = 0;
            }

            _count--;
        }

        if (_count == 0)
        {
            _first = 0;
            _bytesStart = 0;
            _bytesEnd = 0;
        }
    }

    private int Reserve(int length)
    {
        if (_bytesEnd + length > _bytes.Length)
        {
            // Move the live bytes to the start; live bytes + length <= MaxSize - 32 * entries <= Capacity.
            var live = _bytesEnd - _bytesStart;
            _bytes.AsSpan(_bytesStart, live).CopyTo(_bytes);
            for (var i = 0; i < _count; i++)
            {
                var slot = _first + i;
                if (slot >= _entries.Length)
                {
                    slot -= _entries.Length;
                }

                _entries[slot].Offset -= _bytesStart;
            }

            _bytesStart = 0;
            _bytesEnd = live;
        }

        Debug.Assert(_bytesEnd + length <= _bytes.Length, "size accounting guarantees room");
        var offset = _bytesEnd;
        _bytesEnd += length;
        return offset;
    }

    private void Push(int offset, int nameLength, int valueLength, int size)
    {
        Debug.Assert(_count < _entries.Length, "size accounting bounds the entry count");
        var slot = _first + _count;
        if (slot >= _entries.Length)
        {
            slot -= _entries.Length;
        }

        _entries[slot] = new Entry { Offset = offset, NameLength = nameLength, ValueLength = valueLength };
        _count++;
        Size += size;
    }

    private struct Entry
    {
        public int Offset;
        public int NameLength;
        public int ValueLength;
    }
}

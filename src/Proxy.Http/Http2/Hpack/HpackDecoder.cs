using System.Buffers;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http2.Hpack;

/// <summary>
/// HPACK decoder (RFC 7541), one per connection (it owns the connection's decoding dynamic table). A resumable state
/// machine: a header block may arrive split at any byte, across reads and across HEADERS/CONTINUATION frames; call
/// <see cref="Decode{THandler}(ReadOnlySpan{byte}, bool, ref THandler)"/> for each piece and pass
/// <c>endHeaders: true</c> with the last one. Strings that lie whole in one piece and are not Huffman-coded are
/// handed to the handler in place; others are accumulated in two pooled per-decoder buffers (name and value) that
/// are kept between blocks, so a warmed-up decoder allocates nothing per block.
/// </summary>
/// <remarks>
/// Errors: <see cref="HpackDecodingException"/> is a connection error (COMPRESSION_ERROR); the decoder must not be
/// used afterwards. <see cref="HpackHeaderListTooLargeException"/> is thrown after the whole block was processed
/// (the dynamic table stays in step), so the connection may refuse only the stream.
/// </remarks>
public sealed class HpackDecoder : IDisposable
{
    /// <summary>SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 §6.5.2).</summary>
    public const int DefaultHeaderTableSize = 4096;

    /// <summary>Default <see cref="MaxHeaderListSize"/> and <see cref="MaxStringLength"/>: 32 KiB.</summary>
    public const int DefaultMaxHeaderListSize = 32 * 1024;

    private readonly HpackDynamicTable _table;
    private int _allowedTableSize;
    private bool _sizeUpdateRequired;

    // Block state.
    private bool _fieldSeen;
    private long _listSize;
    private bool _listTooLarge;

    // Representation state.
    private State _state;
    private Representation _repr;
    private HpackInteger.Continuation _int;
    private int _nameIndex;          // > 0: the name comes from the static or dynamic table
    private NameSource _nameSource;
    private int _nameStart;          // NameSource.Input: offset in the current piece
    private int _nameLength;
    private bool _huffman;
    private int _stringLength;       // wire length of the string being read
    private int _stringRead;         // wire bytes of it read so far
    private int _valueLength;        // bytes in _valueBuffer
    private HpackHuffman.DecodeState _huffmanState;
    private byte[] _nameBuffer = [];
    private byte[] _valueBuffer = [];
    private HpackHuffmanCache? _huffmanCache;

    /// <summary>
    /// Creates a decoder. <paramref name="maxHeaderTableSize"/> is the SETTINGS_HEADER_TABLE_SIZE this side
    /// advertises (default 4096): the peer's table size updates may not exceed it.
    /// </summary>
    public HpackDecoder(int maxHeaderTableSize = DefaultHeaderTableSize, int maxHeaderListSize = DefaultMaxHeaderListSize, int maxStringLength = DefaultMaxHeaderListSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxHeaderTableSize);
        ArgumentOutOfRangeException.ThrowIfNegative(maxHeaderListSize);
        ArgumentOutOfRangeException.ThrowIfNegative(maxStringLength);
        _table = new HpackDynamicTable(maxHeaderTableSize);
        _allowedTableSize = maxHeaderTableSize;
        MaxHeaderListSize = maxHeaderListSize;
        MaxStringLength = maxStringLength;
    }

    private enum State : byte
    {
        Ready,
        IndexContinuation,
        NameLength,
        NameLengthContinuation,
        NameBody,
        ValueLength,
        ValueLengthContinuation,
        ValueBody,
    }

    private enum Representation : byte
    {
        Indexed,
        IncrementalIndexing,
        WithoutIndexing,
        NeverIndexed,
        SizeUpdate,
    }

    private enum NameSource : byte
    {
        Table,
        Input,
        Buffer,
    }

    /// <summary>Limit on the decoded header list size (name + value + 32 per field, RFC 9113 §6.5.2).</summary>
    public int MaxHeaderListSize { get; set; }

    /// <summary>Limit on the wire length of one string literal; longer is a <see cref="HpackDecodingError.StringTooLong"/>.</summary>
    public int MaxStringLength { get; }

    /// <summary>The decoding dynamic table (for tests and diagnostics).</summary>
    public HpackDynamicTable DynamicTable => _table;

    /// <summary>
    /// True during a handler call for a field sent as "never indexed" (RFC 7541 §6.2.3): an intermediary must
    /// forward it with the same representation.
    /// </summary>
    public bool IsNeverIndexed => _repr == Representation.NeverIndexed;

    /// <summary>
    /// Applies a new local SETTINGS_HEADER_TABLE_SIZE once the peer acknowledged it. When it is below the table's
    /// current maximum, the peer's next block must start with a size update (RFC 7541 §4.2).
    /// </summary>
    public void SetMaxHeaderTableSize(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _table.EnsureCapacity(size);
        _allowedTableSize = size;
        if (size < _table.MaxSize)
        {
            _sizeUpdateRequired = true;
        }
    }

    /// <summary>Decodes the next piece of a header block held in a sequence (e.g. a PipeReader buffer).</summary>
    public void Decode<THandler>(in ReadOnlySequence<byte> fragment, bool endHeaders, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        if (fragment.IsSingleSegment)
        {
            Decode(fragment.FirstSpan, endHeaders, ref handler);
            return;
        }

        foreach (var segment in fragment)
        {
            DecodeCore(segment.Span, ref handler);
        }

        if (endHeaders)
        {
            EndBlock();
        }
    }

    /// <summary>
    /// Decodes the next piece of a header block, calling <paramref name="handler"/> for each complete field.
    /// With <paramref name="endHeaders"/> the block must end here (END_HEADERS).
    /// </summary>
    public void Decode<THandler>(ReadOnlySpan<byte> fragment, bool endHeaders, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        DecodeCore(fragment, ref handler);
        if (endHeaders)
        {
            EndBlock();
        }
    }

    /// <summary>Returns the pooled string buffers.</summary>
    public void Dispose()
    {
        Return(ref _nameBuffer);
        Return(ref _valueBuffer);
    }

    private static void Return(ref byte[] buffer)
    {
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = [];
        }
    }

    private static void EnsureBuffer(ref byte[] buffer, int length, int keep)
    {
        if (buffer.Length >= length)
        {
            return;
        }

        // Grow from the pool; buffers are kept across blocks so steady state rents nothing.
        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(length, 256));
        buffer.AsSpan(0, keep).CopyTo(bigger);
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        buffer = bigger;
    }

    private void EndBlock()
    {
        if (_state != State.Ready)
        {
            throw new HpackDecodingException(HpackDecodingError.TruncatedBlock);
        }

        var tooLarge = _listTooLarge;
        var size = _listSize;
        _fieldSeen = false;
        _listSize = 0;
        _listTooLarge = false;
        if (tooLarge)
        {
            throw new HpackHeaderListTooLargeException(MaxHeaderListSize, size);
        }
    }

    private void DecodeCore<THandler>(ReadOnlySpan<byte> src, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        var pos = 0;
        int value;
        while ((uint)pos < (uint)src.Length)
        {
            switch (_state)
            {
                case State.Ready:
                {
                    var b = src[pos++];
                    int prefix;
                    if ((b & 0x80) != 0)
                    {
                        _repr = Representation.Indexed;
                        prefix = 7;
                    }
                    else if ((b & 0x40) != 0)
                    {
                        _repr = Representation.IncrementalIndexing;
                        prefix = 6;
                    }
                    else if ((b & 0x20) != 0)
                    {
                        _repr = Representation.SizeUpdate;
                        prefix = 5;
                    }
                    else
                    {
                        _repr = (b & 0x10) != 0 ? Representation.NeverIndexed : Representation.WithoutIndexing;
                        prefix = 4;
                    }

                    if (_repr == Representation.SizeUpdate)
                    {
                        if (_fieldSeen)
                        {
                            throw new HpackDecodingException(HpackDecodingError.TableSizeUpdateNotAtStart);
                        }
                    }
                    else
                    {
                        if (_sizeUpdateRequired)
                        {
                            throw new HpackDecodingException(HpackDecodingError.TableSizeUpdateMissing);
                        }

                        _fieldSeen = true;
                    }

                    if (HpackInteger.StartDecode(b, prefix, out value, ref _int))
                    {
                        OnIndex(value, ref handler);
                    }
                    else
                    {
                        _state = State.IndexContinuation;
                    }

                    break;
                }

                case State.IndexContinuation:
                    if (HpackInteger.ContinueDecode(src[pos++], ref _int, out value))
                    {
                        OnIndex(value, ref handler);
                    }

                    break;

                case State.NameLength:
                case State.ValueLength:
                {
                    var b = src[pos++];
                    _huffman = (b & 0x80) != 0;
                    if (HpackInteger.StartDecode(b, 7, out value, ref _int))
                    {
                        StartString(value);
                    }
                    else
                    {
                        _state = _state == State.NameLength ? State.NameLengthContinuation : State.ValueLengthContinuation;
                    }

                    break;
                }

                case State.NameLengthContinuation:
                case State.ValueLengthContinuation:
                    if (HpackInteger.ContinueDecode(src[pos++], ref _int, out value))
                    {
                        _state = _state == State.NameLengthContinuation ? State.NameLength : State.ValueLength;
                        StartString(value);
                    }

                    break;

                case State.NameBody:
                    pos = ReadName(src, pos);
                    break;

                case State.ValueBody:
                    pos = ReadValue(src, pos, ref handler);
                    break;
            }

            // An empty string is complete as soon as its length is known, even at the end of the piece.
            if (_stringLength == 0 && _stringRead == 0 && _state is State.NameBody or State.ValueBody)
            {
                pos = _state == State.NameBody ? ReadName(src, pos) : ReadValue(src, pos, ref handler);
            }
        }

        // The piece ends: a literal name still pointing into it must move to the decoder's buffer.
        if (_nameSource == NameSource.Input && _state is State.ValueLength or State.ValueLengthContinuation or State.ValueBody)
        {
            EnsureBuffer(ref _nameBuffer, _nameLength, 0);
            src.Slice(_nameStart, _nameLength).CopyTo(_nameBuffer);
            _nameSource = NameSource.Buffer;
        }
    }

    private void OnIndex<THandler>(int index, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        _state = State.Ready;
        switch (_repr)
        {
            case Representation.SizeUpdate:
                if (index > _allowedTableSize)
                {
                    throw new HpackDecodingException(HpackDecodingError.TableSizeUpdateTooLarge);
                }

                _table.SetMaxSize(index);
                _sizeUpdateRequired = false;

                return;

            case Representation.Indexed:
                EmitIndexed(index, ref handler);
                return;

            default:
                if (index == 0)
                {
                    _nameIndex = 0;
                    _state = State.NameLength;
                }
                else
                {
                    CheckIndex(index);
                    _nameIndex = index;
                    _nameSource = NameSource.Table;
                    _state = State.ValueLength;
                }

                return;
        }
    }

    private void CheckIndex(int index)
    {
        if (index == 0 || index > HpackStaticTable.Count + _table.Count)
        {
            throw new HpackDecodingException(HpackDecodingError.InvalidIndex);
        }
    }

    private void EmitIndexed<THandler>(int index, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        CheckIndex(index);
        if (HpackStaticTable.IsStatic(index))
        {
            if (Account(HpackStaticTable.Name(index).Length, HpackStaticTable.Value(index).Length))
            {
                handler.OnStaticIndexedHeader(index);
            }

            return;
        }

        var name = _table.Name(index - HpackStaticTable.Count - 1);
        var value = _table.Value(index - HpackStaticTable.Count - 1);
        if (Account(name.Length, value.Length))
        {
            handler.OnHeader(name, value);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Account(int nameLength, int valueLength)
    {
        _listSize += nameLength + valueLength + HpackDynamicTable.EntryOverhead;
        if (_listSize > MaxHeaderListSize)
        {
            // Keep decoding so the dynamic table stays in step; the block fails at its end.
            _listTooLarge = true;
        }

        return !_listTooLarge;
    }

    private void StartString(int length)
    {
        if (length > MaxStringLength)
        {
            throw new HpackDecodingException(HpackDecodingError.StringTooLong);
        }

        _stringLength = length;
        _stringRead = 0;
        _huffmanState = HpackHuffman.DecodeState.Start;
        var decodedMax = _huffman ? HpackHuffman.MaxDecodedLength(length) : length;
        if (_state == State.NameLength)
        {
            _state = State.NameBody;
            _nameLength = 0;
            _nameSource = NameSource.Buffer;
        }
        else
        {
            _state = State.ValueBody;
            _valueLength = 0;
        }

        // Huffman output buffers are sized when the string starts, so the decode loop never grows them.
        if (length == 0)
        {
            return;
        }

        if (_state == State.NameBody)
        {
            // Reserve only when the name cannot be referenced in place (checked again in ReadName).
            if (_huffman)
            {
                EnsureBuffer(ref _nameBuffer, decodedMax, 0);
            }
        }
        else if (_huffman)
        {
            EnsureBuffer(ref _valueBuffer, decodedMax, 0);
        }
    }

    private int ReadName(ReadOnlySpan<byte> src, int pos)
    {
        var available = src.Length - pos;
        var remaining = _stringLength - _stringRead;
        if (_stringRead == 0 && !_huffman && remaining <= available)
        {
            // Whole raw name in this piece: reference it in place, no copy.
            _nameSource = NameSource.Input;
            _nameStart = pos;
            _nameLength = remaining;
            _state = State.ValueLength;
            return pos + remaining;
        }

        var take = Math.Min(remaining, available);
        var chunk = src.Slice(pos, take);
        if (_huffman)
        {
            _nameLength += HpackHuffman.DecodeChunk(chunk, _nameBuffer.AsSpan(_nameLength), ref _huffmanState);
        }
        else
        {
            EnsureBuffer(ref _nameBuffer, _stringLength, _nameLength);
            chunk.CopyTo(_nameBuffer.AsSpan(_nameLength));
            _nameLength += take;
        }

        _stringRead += take;
        if (_stringRead == _stringLength)
        {
            if (_huffman && !_huffmanState.IsAccepting)
            {
                throw new HpackDecodingException(HpackDecodingError.InvalidHuffman);
            }

            _nameSource = NameSource.Buffer;
            _state = State.ValueLength;
        }

        return pos + take;
    }

    private int ReadValue<THandler>(ReadOnlySpan<byte> src, int pos, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        var available = src.Length - pos;
        var remaining = _stringLength - _stringRead;
        if (_stringRead == 0 && !_huffman && remaining <= available)
        {
            // Whole raw value in this piece: hand it over in place, no copy.
            EmitLiteral(src, src.Slice(pos, remaining), ref handler);
            return pos + remaining;
        }

        if (_stringRead == 0 && _huffman && remaining <= available && remaining is > 0 and <= HpackHuffmanCache.MaxEncodedLength)
        {
            // Whole short Huffman value in this piece: decoded once per distinct value while it keeps coming back.
            EmitLiteral(src, (_huffmanCache ??= new HpackHuffmanCache()).Decode(src.Slice(pos, remaining)), ref handler);
            return pos + remaining;
        }

        var take = Math.Min(remaining, available);
        var chunk = src.Slice(pos, take);
        if (_huffman)
        {
            _valueLength += HpackHuffman.DecodeChunk(chunk, _valueBuffer.AsSpan(_valueLength), ref _huffmanState);
        }
        else
        {
            EnsureBuffer(ref _valueBuffer, _stringLength, _valueLength);
            chunk.CopyTo(_valueBuffer.AsSpan(_valueLength));
            _valueLength += take;
        }

        _stringRead += take;
        if (_stringRead == _stringLength)
        {
            if (_huffman && !_huffmanState.IsAccepting)
            {
                throw new HpackDecodingException(HpackDecodingError.InvalidHuffman);
            }

            EmitLiteral(src, _valueBuffer.AsSpan(0, _valueLength), ref handler);
        }

        return pos + take;
    }

    private void EmitLiteral<THandler>(ReadOnlySpan<byte> src, ReadOnlySpan<byte> value, ref THandler handler)
        where THandler : IHpackHeaderHandler, allows ref struct
    {
        _state = State.Ready;
        ReadOnlySpan<byte> name;
        var staticName = false;
        if (_nameIndex > 0)
        {
            staticName = HpackStaticTable.IsStatic(_nameIndex);
            name = staticName ? HpackStaticTable.Name(_nameIndex) : _table.Name(_nameIndex - HpackStaticTable.Count - 1);
        }
        else
        {
            name = _nameSource == NameSource.Input ? src.Slice(_nameStart, _nameLength) : _nameBuffer.AsSpan(0, _nameLength);
        }

        if (Account(name.Length, value.Length))
        {
            if (staticName)
            {
                handler.OnStaticIndexedHeader(_nameIndex, value);
            }
            else
            {
                handler.OnHeader(name, value);
            }
        }

        if (_repr == Representation.IncrementalIndexing)
        {
            _table.Add(name, value);
        }

        _nameSource = NameSource.Table;
    }
}

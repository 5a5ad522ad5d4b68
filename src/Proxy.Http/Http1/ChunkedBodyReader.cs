using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>Outcome of one <see cref="ChunkedBodyReader.Read"/> call.</summary>
public enum ChunkedReadResult
{
    /// <summary>No payload available yet; advance to <c>consumed</c> (framing already decoded) and read more.</summary>
    NeedMoreData,
    /// <summary><c>data</c> holds payload bytes of the current chunk (never empty).</summary>
    Data,
    /// <summary>Last chunk and trailer section decoded; <c>data</c> holds the trailer field lines (each with its CRLF), possibly empty.</summary>
    Completed,
}

/// <summary>
/// Decoder for the chunked transfer coding (RFC 9112 §7.1): a resumable state machine over
/// <c>size [;ext] CRLF data CRLF ... 0 CRLF trailers CRLF</c>. Payload comes out as slices of the
/// caller's buffer (no copy), so a body of any size streams through without being buffered whole.
/// One instance per connection; <see cref="Reset"/> before each chunked message.
/// <para>
/// Usage: call <see cref="Read"/> on the unconsumed buffer; forward <c>data</c>; then
/// <c>AdvanceTo(consumed, result == NeedMoreData ? buffer.End : consumed)</c>; repeat until Completed.
/// Strict: hex size without whitespace, 64-bit overflow refused, extensions validated, CRLF required
/// after data, trailer fields validated like header fields; size line and trailers are bounded.
/// </para>
/// </summary>
public sealed class ChunkedBodyReader
{
    private readonly Http1ParserOptions _options;
    private readonly Http1ParserOptions _trailerOptions;
    private readonly Http1HeaderList _trailers = new();
    private byte[]? _scratch;
    private State _state;
    private long _remaining;

    /// <summary>Creates a decoder with the given limits.</summary>
    public ChunkedBodyReader(Http1ParserOptions? options = null)
    {
        _options = options ?? Http1ParserOptions.Default;
        _trailerOptions = _options with { MaxHeaderBytes = _options.MaxTrailerBytes };
    }

    private enum State : byte
    {
        SizeLine,
        Data,
        DataCrlf,
        Trailers,
        Done,
    }

    /// <summary>The whole body, including trailers, has been decoded.</summary>
    public bool IsComplete => _state == State.Done;

    /// <summary>Payload bytes decoded so far in this message.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Trailer fields of the completed message; spans valid until the caller advances past them.</summary>
    public Http1HeaderList Trailers => _trailers;

    /// <summary>Prepares for the next chunked message.</summary>
    public void Reset()
    {
        _state = State.SizeLine;
        _remaining = 0;
        BytesRead = 0;
        _trailers.Reset(default);
    }

    /// <summary>Decodes from the start of <paramref name="buffer"/>; see the type's remarks.</summary>
    public ChunkedReadResult Read(in ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> data, out SequencePosition consumed)
    {
        var rest = buffer;
        while (true)
        {
            switch (_state)
            {
                case State.SizeLine:
                    if (!TryReadSizeLine(ref rest))
                    {
                        data = default;
                        consumed = rest.Start;
                        return ChunkedReadResult.NeedMoreData;
                    }

                    break;
                case State.Data:
                    if (rest.IsEmpty)
                    {
                        data = default;
                        consumed = rest.Start;
                        return ChunkedReadResult.NeedMoreData;
                    }

                    var take = Math.Min(_remaining, rest.Length);
                    data = rest.Slice(0, take);
                    consumed = data.End;
                    _remaining -= take;
                    BytesRead += take;
                    if (_remaining == 0)
                    {
                        _state = State.DataCrlf;
                    }

                    return ChunkedReadResult.Data;
                case State.DataCrlf:
                    if (!TryReadDataCrlf(ref rest))
                    {
                        data = default;
                        consumed = rest.Start;
                        return ChunkedReadResult.NeedMoreData;
                    }

                    break;
                case State.Trailers:
                    if (!TryReadTrailers(ref rest, out data))
                    {
                        consumed = rest.Start;
                        return ChunkedReadResult.NeedMoreData;
                    }

                    consumed = rest.Start;
                    return ChunkedReadResult.Completed;
                default:
                    data = default;
                    consumed = rest.Start;
                    return ChunkedReadResult.Completed;
            }
        }
    }

    private bool TryReadSizeLine(ref ReadOnlySequence<byte> rest)
    {
        var max = _options.MaxChunkLineBytes;
        var lfPosition = rest.PositionOf(Http1Syntax.LF);
        if (lfPosition is null)
        {
            if (rest.Length > max + 1)
            {
                Http1ParseErrors.Throw(Http1ParseError.ChunkLineTooLong);
            }

            CheckPartialSizeLine(rest);
            return false;
        }

        var lineWithCr = rest.Slice(0, lfPosition.Value);
        if (lineWithCr.Length > max + 1)
        {
            Http1ParseErrors.Throw(Http1ParseError.ChunkLineTooLong);
        }

        var line = GetSpan(lineWithCr);
        if (line.IsEmpty || line[^1] != Http1Syntax.CR)
        {
            Http1ParseErrors.Throw(line.IsEmpty ? Http1ParseError.InvalidChunkSize : Http1ParseError.BareLf);
        }

        line = line[..^1];
        var size = ParseSizeLine(line);
        rest = rest.Slice(rest.GetPosition(1, lfPosition.Value));
        if (size == 0)
        {
            _state = State.Trailers;
        }
        else
        {
            _remaining = size;
            _state = State.Data;
        }

        return true;
    }

    private static void CheckPartialSizeLine(in ReadOnlySequence<byte> partial)
    {
        // A partial size line can already be refused when its first byte is not a hex digit.
        if (!partial.IsEmpty && !char.IsAsciiHexDigit((char)partial.FirstSpan[0]))
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidChunkSize);
        }
    }

    private static long ParseSizeLine(ReadOnlySpan<byte> line)
    {
        if (line.Contains(Http1Syntax.CR))
        {
            Http1ParseErrors.Throw(Http1ParseError.BareCr);
        }

        long size = 0;
        var i = 0;
        for (; i < line.Length; i++)
        {
            var b = line[i];
            int digit;
            if ((uint)(b - '0') <= 9)
            {
                digit = b - '0';
            }
            else if ((uint)((b | 0x20) - 'a') <= 5)
            {
                digit = (b | 0x20) - 'a' + 10;
            }
            else
            {
                break;
            }

            // Overflow before the shift: the top nibble must be free.
            if (size > (long.MaxValue >> 4))
            {
                Http1ParseErrors.Throw(Http1ParseError.ChunkSizeOverflow);
            }

            size = (size << 4) | (uint)digit;
        }

        if (i == 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidChunkSize);
        }

        if (i < line.Length)
        {
            var ext = line[i..];
            if (ext[0] != ';')
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidChunkSize);
            }

            if (!Http1Syntax.IsValidChunkExtensions(ext))
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidChunkExtension);
            }
        }

        return size;
    }

    private bool TryReadDataCrlf(ref ReadOnlySequence<byte> rest)
    {
        if (rest.IsEmpty)
        {
            return false;
        }

        var first = rest.FirstSpan[0];
        if (first != Http1Syntax.CR)
        {
            Http1ParseErrors.Throw(first == Http1Syntax.LF ? Http1ParseError.BareLf : Http1ParseError.InvalidChunkTerminator);
        }

        if (rest.Length < 2)
        {
            return false;
        }

        var reader = new SequenceReader<byte>(rest);
        reader.Advance(1);
        reader.TryPeek(out var second);
        if (second != Http1Syntax.LF)
        {
            Http1ParseErrors.Throw(Http1ParseError.BareCr);
        }

        rest = rest.Slice(2);
        _state = State.SizeLine;
        return true;
    }

    private bool TryReadTrailers(ref ReadOnlySequence<byte> rest, out ReadOnlySequence<byte> trailers)
    {
        trailers = default;
        var max = _options.MaxTrailerBytes;
        ReadOnlyMemory<byte> memory;
        if (rest.IsSingleSegment || rest.FirstSpan.Length > max)
        {
            memory = rest.First;
        }
        else
        {
            var length = (int)Math.Min(rest.Length, max + 1);
            EnsureScratch(length);
            rest.Slice(0, length).CopyTo(_scratch);
            memory = _scratch.AsMemory(0, length);
        }

        var facts = Http1HeaderFacts.Create();
        _trailers.Reset(memory);
        int end;
        try
        {
            end = Http1HeaderSection.Parse(memory.Span, 0, _trailers, _trailerOptions, isRequest: false, checkPartial: rest.IsSingleSegment || memory.Length == rest.Length, ref facts);
        }
        catch (Http1ParseException e) when (e.Error is Http1ParseError.HeaderTooLarge or Http1ParseError.TooManyHeaders)
        {
            throw new Http1ParseException(Http1ParseError.TrailerTooLarge);
        }

        if (end < 0)
        {
            return false;
        }

        trailers = rest.Slice(0, end - 2);
        rest = rest.Slice(end);
        _state = State.Done;
        return true;
    }

    [System.Diagnostics.CodeAnalysis.MemberNotNull(nameof(_scratch))]
    private void EnsureScratch(int length)
    {
        // Per-connection scratch for the rare split line or trailer section; grows to what is needed, then reused.
        if (_scratch is null || _scratch.Length < length)
        {
            _scratch = new byte[Math.Max(256, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)length))];
        }
    }

    private ReadOnlySpan<byte> GetSpan(in ReadOnlySequence<byte> sequence)
    {
        if (sequence.IsSingleSegment)
        {
            return sequence.FirstSpan;
        }

        // Size line split across segments (rare): copy into a scratch bounded by MaxChunkLineBytes.
        var length = (int)sequence.Length;
        EnsureScratch(length);
        sequence.CopyTo(_scratch);
        return _scratch.AsSpan(0, length);
    }
}

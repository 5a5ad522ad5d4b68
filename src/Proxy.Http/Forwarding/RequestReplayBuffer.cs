using System.Buffers;

namespace Proxy.Http.Forwarding;

/// <summary>
/// A copy of one request as it was sent upstream, kept so a retry can send it again: the request head (written here
/// once, then copied to each try's connection) and the body bytes the pump consumed from the client (exactly what it
/// wrote upstream: the validated chunk framing included). The body part is bounded by a limit; past it the buffer
/// stops copying and says so (<see cref="Overflowed"/>), and the request is no longer retriable. Memory comes from
/// <see cref="ArrayPool{T}.Shared"/> and goes back on <see cref="Reset"/>, so a kept request allocates nothing.
/// </summary>
internal sealed class RequestReplayBuffer : IBufferWriter<byte>
{
    private byte[] _buffer = [];
    private int _length;
    private int _headLength = -1;
    private int _bodyLimit;

    /// <summary>Whether the head has been written (<see cref="EndHead"/>).</summary>
    public bool HasHead => _headLength >= 0;

    /// <summary>Whether the body grew past its limit (its copy is incomplete: no replay).</summary>
    public bool Overflowed { get; private set; }

    public ReadOnlySpan<byte> Head => _buffer.AsSpan(0, Math.Max(0, _headLength));

    public ReadOnlySpan<byte> Body => HasHead ? _buffer.AsSpan(_headLength, _length - _headLength) : default;

    /// <summary>Starts keeping a new request whose body may be up to <paramref name="bodyLimit"/> bytes.</summary>
    public void Begin(int bodyLimit)
    {
        _length = 0;
        _headLength = -1;
        _bodyLimit = bodyLimit;
        Overflowed = false;
    }

    /// <summary>Marks the end of the head (everything written so far); what follows is body.</summary>
    public void EndHead() => _headLength = _length;

    /// <summary>Keeps body bytes the pump consumed; false (and <see cref="Overflowed"/>) once they exceed the limit.</summary>
    public bool AppendBody(in ReadOnlySequence<byte> data)
    {
        if (Overflowed)
        {
            return false;
        }

        if (_length - _headLength + data.Length > _bodyLimit)
        {
            Overflowed = true;
            return false;
        }

        foreach (var segment in data)
        {
            var span = GetSpan(segment.Length);
            segment.Span.CopyTo(span);
            _length += segment.Length;
        }

        return true;
    }

    /// <summary>Gives the memory back to the pool.</summary>
    public void Reset()
    {
        if (_buffer.Length != 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }

        _length = 0;
        _headLength = -1;
        Overflowed = false;
    }

    public void Advance(int count) => _length += count;

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_length);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_length);
    }

    private void Ensure(int sizeHint)
    {
        var needed = _length + Math.Max(sizeHint, 1);
        if (needed <= _buffer.Length)
        {
            return;
        }

        var grown = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Max(4096, _buffer.Length * 2)));
        _buffer.AsSpan(0, _length).CopyTo(grown);
        if (_buffer.Length != 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = grown;
    }
}

using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> in front of another that takes one block for a whole head and advances the inner
/// writer once, at <see cref="Commit"/>. A head is written in many small pieces (four per field line); on a
/// <see cref="System.IO.Pipelines.Pipe"/> every GetSpan after a flush and every Advance takes the pipe's lock, which
/// made lock traffic a tenth of the proxy's CPU on the HTTP/2 path. Reusable: <see cref="Start"/>, write, <see cref="Commit"/>.
/// Not thread-safe (one head at a time, like the writer behind it).
/// </summary>
internal sealed class CoalescingBufferWriter : IBufferWriter<byte>
{
    // Most heads fit; a larger one takes further blocks as it goes (each committed before the next is taken).
    private const int BlockHint = 512;

    private IBufferWriter<byte>? _inner;
    private Memory<byte> _block;
    private int _written;

    /// <summary>Starts writing to <paramref name="inner"/>; nothing reaches it before <see cref="Commit"/>.</summary>
    public CoalescingBufferWriter Start(IBufferWriter<byte> inner)
    {
        _inner = inner;
        _block = default;
        _written = 0;
        return this;
    }

    /// <summary>Advances the inner writer over everything written since <see cref="Start"/> (or the last block change).</summary>
    public void Commit()
    {
        if (_written > 0)
        {
            _inner!.Advance(_written);
        }

        _written = 0;
        _block = default;
        _inner = null;
    }

    public void Advance(int count)
    {
        if ((uint)count > (uint)(_block.Length - _written))
        {
            throw new ArgumentOutOfRangeException(nameof(count), "Advanced past the buffer that was handed out.");
        }

        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _block[_written..];
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _block.Span[_written..];
    }

    private void Ensure(int sizeHint)
    {
        sizeHint = Math.Max(sizeHint, 1);
        if (_block.Length - _written >= sizeHint)
        {
            return;
        }

        var inner = _inner ?? throw new InvalidOperationException("Start was not called.");
        if (_written > 0)
        {
            inner.Advance(_written);
            _written = 0;
        }

        _block = inner.GetMemory(Math.Max(sizeHint, BlockHint));
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http2.Client;

/// <summary>
/// The response body as the consumer sees it: the stream's pipe reader, counting the bytes each
/// <see cref="AdvanceTo(SequencePosition, SequencePosition)"/> consumes so the connection credits the windows
/// (WINDOW_UPDATE) only for body bytes really taken.
/// </summary>
internal sealed class Http2ClientBodyReader(PipeReader inner, Http2ClientStream stream) : PipeReader
{
    private ReadOnlySequence<byte> _last;

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        var taken = _last.IsEmpty ? 0 : _last.Slice(_last.Start, consumed).Length;
        _last = default;
        inner.AdvanceTo(consumed, examined);
        if (taken > 0)
        {
            stream.OnBodyConsumed(taken);
        }
    }

    public override void CancelPendingRead() => inner.CancelPendingRead();

    /// <summary>The stream object is reused for another stream (its pipe was reset).</summary>
    internal void ResetForReuse() => _last = default;

    public override void Complete(Exception? exception = null)
    {
        inner.Complete(exception);
        stream.OnReaderCompleted();
    }

    // Pooled builder: a read that waits for the next DATA frame would otherwise allocate its state machine box.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
        _last = result.Buffer;
        return result;
    }

    public override bool TryRead(out ReadResult result)
    {
        if (!inner.TryRead(out result))
        {
            return false;
        }

        _last = result.Buffer;
        return true;
    }
}

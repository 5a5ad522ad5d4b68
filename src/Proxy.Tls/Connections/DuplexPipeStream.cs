using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Proxy.Tls.Connections;

/// <summary>
/// A <see cref="Stream"/> over a connection's <see cref="IDuplexPipe"/>: what <see cref="System.Net.Security.SslStream"/>
/// reads TLS records from and writes them to. Reads copy out of the pipe's buffers (SslStream wants its own buffer);
/// writes go into the pipe and are flushed at once (SslStream writes whole records). Both run on the caller's flow:
/// no task, no thread hop. Disposing does not complete the pipes: the raw connection's owner closes them.
/// </summary>
internal sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
{
    private readonly PipeReader _input = pipe.Input;
    private readonly PipeWriter _output = pipe.Output;

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Fast path: bytes already buffered in the pipe (a TLS record arrived in one socket read).
        if (_input.TryRead(out var result) && Consume(result, buffer.Span, out var copied))
        {
            return ValueTask.FromResult(copied);
        }

        return ReadSlowAsync(buffer, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadSlowAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (Consume(result, buffer.Span, out var done))
            {
                return done;
            }
        }
    }

    /// <summary>Copies what fits; false (and nothing consumed) when the read carried no bytes and the pipe goes on.</summary>
    private bool Consume(ReadResult result, Span<byte> destination, out int copied)
    {
        var data = result.Buffer;
        if (!data.IsEmpty)
        {
            copied = (int)Math.Min(data.Length, destination.Length);
            var slice = data.Slice(0, copied);
            slice.CopyTo(destination);
            _input.AdvanceTo(slice.End);
            return true;
        }

        _input.AdvanceTo(data.Start, data.End);
        copied = 0;
        if (result.IsCanceled)
        {
            throw new OperationCanceledException("The read of the underlying connection was cancelled.");
        }

        return result.IsCompleted;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var flush = await _output.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new IOException("The connection is closed: the peer no longer reads.");
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    // Every write is flushed already.
    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    // Synchronous I/O would block an event-loop thread: SslStream is only used through its async methods here.
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("Synchronous reads are not supported.");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("Synchronous writes are not supported.");

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

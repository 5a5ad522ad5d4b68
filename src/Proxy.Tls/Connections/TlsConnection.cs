using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace Proxy.Tls.Connections;

/// <summary>
/// The decrypted side of a TLS connection, as a <see cref="ConnectionContext"/> the next stage uses like any other:
/// <code>
///   stage ◄─ Transport.Input  = PipeReader.Create(SslStream) ◄─ SslStream ◄─ DuplexPipeStream ◄─ raw Transport.Input  ◄─ socket
///   stage ─► Transport.Output = TlsOutput(PipeWriter.Create(SslStream)) ─► SslStream ─► DuplexPipeStream ─► raw Transport.Output ─► socket
/// </code>
/// Reads and writes run on the caller's flow (no pump task per direction). Lifetime is the raw connection's:
/// <see cref="ConnectionClosed"/> is its token, <see cref="Abort(ConnectionAbortedException)"/> resets it.
/// Completing <c>Output</c> sends close_notify, then FIN (half-close). <see cref="DisposeAsync"/> disposes the
/// SslStream, then the raw connection. Features: only the TLS ones (<see cref="TlsConnectionInfo"/>) and the endpoint
/// ones; the raw socket's takeover feature is deliberately not visible (splice cannot carry TLS).
/// </summary>
public sealed class TlsConnection : ConnectionContext, IConnectionEndPointFeature, IConnectionLifetimeFeature
{
    private readonly ConnectionContext _raw;
    private readonly SslStream _stream;
    private readonly FeatureCollection _features = new();
    private int _disposed;

    internal TlsConnection(ConnectionContext raw, SslStream stream, TlsConnectionInfo info, TlsPipeOptions pipeOptions)
    {
        _raw = raw;
        _stream = stream;
        Info = info;
        var input = PipeReader.Create(stream, new StreamPipeReaderOptions(pipeOptions.Pool, pipeOptions.ReadBufferSize, pipeOptions.MinimumReadSize, leaveOpen: true));
        var output = new TlsOutput(PipeWriter.Create(stream, new StreamPipeWriterOptions(pipeOptions.Pool, pipeOptions.MinimumWriteBufferSize, leaveOpen: true)), stream, raw);
        Transport = new DuplexPipe(input, output);
        _features.Set<ITlsConnectionFeature>(info);
        _features.Set<ITlsApplicationProtocolFeature>(info);
        _features.Set(info);
        _features.Set<IConnectionEndPointFeature>(this);
        _features.Set<IConnectionLifetimeFeature>(this);
    }

    /// <summary>The handshake's outcome: ALPN, SNI, protocol, cipher, peer certificate.</summary>
    public TlsConnectionInfo Info { get; }

    /// <summary>The encrypted connection underneath.</summary>
    public ConnectionContext Inner => _raw;

    public override string ConnectionId
    {
        get => _raw.ConnectionId;
        set => _raw.ConnectionId = value;
    }

    public override IFeatureCollection Features => _features;

    public override IDictionary<object, object?> Items
    {
        get => _raw.Items;
        set => _raw.Items = value;
    }

    public override IDuplexPipe Transport { get; set; }

    public override CancellationToken ConnectionClosed
    {
        get => _raw.ConnectionClosed;
        set => _raw.ConnectionClosed = value;
    }

    public override EndPoint? LocalEndPoint
    {
        get => _raw.LocalEndPoint;
        set => _raw.LocalEndPoint = value;
    }

    public override EndPoint? RemoteEndPoint
    {
        get => _raw.RemoteEndPoint;
        set => _raw.RemoteEndPoint = value;
    }

    public override void Abort(ConnectionAbortedException abortReason) => _raw.Abort(abortReason);

    public override void Abort() => _raw.Abort();

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await CloseAsync().ConfigureAwait(false);
        }

        await base.DisposeAsync().ConfigureAwait(false);
    }

    private async Task CloseAsync()
    {
        // Complete our ends (a writer not completed yet ends with close_notify), then let the raw connection close
        // gracefully: pending output, FIN, close.
        await Transport.Input.CompleteAsync().ConfigureAwait(false);
        await ((TlsOutput)Transport.Output).CompleteAndWaitAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        await _raw.DisposeAsync().ConfigureAwait(false);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}

/// <summary>Buffer sizes and pool of the decrypted pipes.</summary>
public sealed record TlsPipeOptions
{
    /// <summary>Null: the pipes' default pool (array pool backed).</summary>
    public MemoryPool<byte>? Pool { get; init; }

    /// <summary>Buffer per decrypted read; a TLS record carries at most 16 KiB of plaintext.</summary>
    public int ReadBufferSize { get; init; } = 16 * 1024;

    /// <summary>Smallest free space a read asks for before it reads.</summary>
    public int MinimumReadSize { get; init; } = 4 * 1024;

    /// <summary>Smallest buffer the writer hands out; writes reach SslStream on flush, one or more records each.</summary>
    public int MinimumWriteBufferSize { get; init; } = 4 * 1024;

    public static TlsPipeOptions Default { get; } = new();
}

/// <summary>
/// The decrypted output. Forwards to the stream writer; completing it (the stage is done sending) flushes what is
/// buffered, sends close_notify and then completes the raw output (FIN), so a half-close passes through TLS.
/// Completing with an exception resets instead.
/// </summary>
internal sealed class TlsOutput(PipeWriter inner, SslStream stream, ConnectionContext raw) : PipeWriter
{
    private Task? _completion;

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;

    public override void Advance(int bytes) => inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        => inner.WriteAsync(source, cancellationToken);

    // Synchronous completion must not write (a stream writer's Complete writes synchronously): the close runs on.
    public override void Complete(Exception? exception = null) => _ = CompleteAsync(exception).AsTask();

    public override ValueTask CompleteAsync(Exception? exception = null)
    {
        lock (this)
        {
            _completion ??= CloseAsync(exception);
        }

        return new ValueTask(_completion);
    }

    internal Task CompleteAndWaitAsync() => CompleteAsync().AsTask();

    private async Task CloseAsync(Exception? exception)
    {
        try
        {
            if (exception is not null)
            {
                await inner.CompleteAsync(exception).ConfigureAwait(false);
                raw.Abort(new ConnectionAbortedException("The TLS connection's writer failed.", exception));
                return;
            }

            await inner.CompleteAsync().ConfigureAwait(false);
            await stream.ShutdownAsync().ConfigureAwait(false);
            await raw.Transport.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or NotSupportedException)
        {
            // The connection is gone already (reset, aborted, disposed): nothing left to close gracefully.
            await raw.Transport.Output.CompleteAsync(e).ConfigureAwait(false);
        }
    }
}

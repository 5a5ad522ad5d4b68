using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Transport;

namespace Proxy.Http.Http2;

/// <summary>What an <see cref="Http2OutputFlusher"/> reads and sets on the connection it flushes for.</summary>
internal interface IHttp2OutputOwner
{
    /// <summary>The transport's output is gone: nothing more can be sent.</summary>
    bool OutputBroken { get; set; }
}

/// <summary>
/// The flushes of one HTTP/2 connection's output, either side (<see cref="Server.Http2ServerSession"/> towards a client,
/// <see cref="Client.Http2ClientConnection"/> towards an upstream). Callers hold the connection's write lock.
/// On an event loop thread a flush is deferred to the end of the loop's batch (<see cref="IoBatch"/>), so the frames of
/// every stream handled in that batch, and the frame loop's ACKs and WINDOW_UPDATEs, leave in one send, as HAProxy
/// does. A deferred flush that the peer's slowness holds up is awaited by the next writer (back-pressure), and a write
/// that finds <see cref="MaxDeferredBytes"/> unflushed flushes at once: the peer's flow-control window may let one batch
/// write far more than a socket buffer (h2load grants 1 GiB). Off the loop every flush is immediate.
/// </summary>
internal sealed class Http2OutputFlusher(PipeWriter output, SemaphoreSlim writeLock, IHttp2OutputOwner owner)
{
    /// <summary>Unflushed output beyond which a write flushes at once instead of at the end of the event loop's batch.</summary>
    public const int MaxDeferredBytes = 64 * 1024;

    private static readonly Action<object?> s_deferredFlush = static state => ((Http2OutputFlusher)state!).DeferredFlush();

    private Task<FlushResult>? _pending;
    private bool _deferred;

    /// <summary>Flushes now or at the end of the batch; false once the output is broken. Call under the write lock.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> FlushAsync()
    {
        if (_pending is { } pending)
        {
            _pending = null;
            await CompleteAsync(new ValueTask<FlushResult>(pending)).ConfigureAwait(false);
        }

        if (owner.OutputBroken)
        {
            return false;
        }

        if (!output.CanGetUnflushedBytes || output.UnflushedBytes < MaxDeferredBytes)
        {
            if (_deferred)
            {
                // A flush at the end of this batch is already due: it sends these bytes too.
                return true;
            }

            if (IoBatch.TryDefer(s_deferredFlush, this))
            {
                _deferred = true;
                return true;
            }
        }

        return await CompleteAsync(output.FlushAsync(CancellationToken.None)).ConfigureAwait(false);
    }

    /// <summary>Flushes at once (after any flush still pending); false once the output is broken. Call under the write lock.</summary>
    public async ValueTask<bool> FlushNowAsync()
    {
        if (_pending is { } pending)
        {
            _pending = null;
            await CompleteAsync(new ValueTask<FlushResult>(pending)).ConfigureAwait(false);
        }

        return !owner.OutputBroken && await CompleteAsync(output.FlushAsync(CancellationToken.None)).ConfigureAwait(false);
    }

    private async ValueTask<bool> CompleteAsync(ValueTask<FlushResult> flush)
    {
        try
        {
            var result = await flush.ConfigureAwait(false);
            if (result.IsCompleted || result.IsCanceled)
            {
                owner.OutputBroken = true;
                return false;
            }

            return true;
        }
        catch (Exception e) when (IsTransportFailure(e) || e is OperationCanceledException)
        {
            owner.OutputBroken = true;
            return false;
        }
    }

    /// <summary>Runs on the loop thread after its batch: one flush for everything written meanwhile.</summary>
    private void DeferredFlush()
    {
        _deferred = false;
        try
        {
            if (!writeLock.Wait(0))
            {
                // A writer holds the lock: it flushes (or defers again) after writing, which commits these bytes too.
                return;
            }
        }
        catch (ObjectDisposedException)
        {
            // The connection was disposed meanwhile: nothing left to send.
            return;
        }

        try
        {
            if (owner.OutputBroken || _pending is not null)
            {
                return;
            }

            ValueTask<FlushResult> flush;
            try
            {
                flush = output.FlushAsync(CancellationToken.None);
            }
            catch (Exception e) when (IsTransportFailure(e))
            {
                owner.OutputBroken = true;
                return;
            }

            if (flush.IsCompletedSuccessfully)
            {
                var result = flush.Result;
                if (result.IsCompleted || result.IsCanceled)
                {
                    owner.OutputBroken = true;
                }
            }
            else
            {
                // The peer reads slowly: the next writer waits for this flush first.
                _pending = flush.AsTask();
            }
        }
        finally
        {
            writeLock.Release();
        }
    }

    private static bool IsTransportFailure(Exception e) =>
        e is IOException or InvalidOperationException or ConnectionAbortedException or ObjectDisposedException;
}

using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>
/// The receive and send loops over an <see cref="EpollLoop"/> (Linux, the default): the same contract as the
/// socket-engine loops (see the class remarks), with fewer system calls per exchange.
/// </summary>
public sealed partial class SocketConnection
{
    private const int ENOTSOCK = 88;

    private async Task EpollReceiveLoopAsync(EpollSocket io)
    {
        var input = _inputWriter!;
        var minRead = Math.Max(1, _settings.Pool.BlockSize / 2);
        Exception? error = null;

        // Read only after the loop said readable; a read that filled the buffer may have left more behind (an
        // edge-triggered loop says nothing more about bytes already queued), so read again at once. So does a
        // read after the peer's FIN was seen: the FIN itself will bring no further edge.
        var mayHaveMore = false;
        try
        {
            while (true)
            {
                if (!mayHaveMore)
                {
                    await io.Readable.WaitAsync();
                }

                if (_aborted)
                {
                    error = _abortReason ?? new ConnectionAbortedException("The connection was closed locally.");
                    break;
                }

                var buffer = input.GetMemory(minRead);
                var received = await io.ReceiveAsync(buffer);
                if (received < 0)
                {
                    var errno = -received;
                    if (errno == SocketNative.EINTR)
                    {
                        mayHaveMore = true;
                        continue;
                    }

                    if (errno == SocketNative.EAGAIN)
                    {
                        mayHaveMore = false;
                        continue;
                    }

                    error = ReceiveError(errno);
                    break;
                }

                if (received == 0)
                {
                    // FIN. If a send already consumed the kernel's pending ECONNRESET, report the reset here too.
                    error = _sendReset;
                    break;
                }

                mayHaveMore = received == buffer.Length || io.PeerClosed;
                input.Advance(received);
                var flush = await input.FlushAsync();
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    // The application stopped reading.
                    break;
                }
            }
        }
        catch (Exception ex)
        {
            error = _aborted
                ? _abortReason ?? new ConnectionAbortedException("The connection was closed locally.", ex)
                : new IOException($"Receive failed: {ex.Message}", ex);
        }
        finally
        {
            await input.CompleteAsync(error);
            DirectionDone();
        }
    }

    private async Task EpollSendLoopAsync(EpollSocket io)
    {
        var output = _outputReader!;
        var reset = false;
        try
        {
            while (true)
            {
                // Woken by writers on any thread: keep capturing no execution context.
                SuppressedFlow.Ensure();
                ReadResult result;
                try
                {
                    result = await output.ReadAsync();
                }
                catch (Exception ex)
                {
                    OnOutputFaulted(ex);
                    reset = true;
                    break;
                }

                if (result.IsCanceled)
                {
                    // Abort() woke us: the socket is already reset.
                    break;
                }

                var buffer = result.Buffer;
                var failed = false;
                var remaining = buffer;
                while (!remaining.IsEmpty)
                {
                    var sent = await io.SendAsync(remaining);
                    if (sent >= 0)
                    {
                        remaining = remaining.Slice(sent);
                        continue;
                    }

                    var errno = -sent;
                    if (errno == SocketNative.EINTR)
                    {
                        continue;
                    }

                    if (errno == SocketNative.EAGAIN)
                    {
                        // The send buffer is full: wait for the loop to report space (or a close).
                        io.WatchWrite();
                        await io.Writable.WaitAsync();
                        if (_aborted)
                        {
                            failed = true;
                            break;
                        }

                        continue;
                    }

                    if (!_aborted && IsResetErrno(errno))
                    {
                        var inner = new SocketException((int)SocketNative.ToSocketError(errno));
                        _sendReset = new ConnectionResetException(inner.Message, inner);
                    }

                    failed = true;
                    break;
                }

                output.AdvanceTo(buffer.End);
                if (failed)
                {
                    break;
                }

                if (result.IsCompleted)
                {
                    // FIN toward the peer, keep receiving (errors are the receive loop's to report). A plain call, not
                    // through the loop's io_uring: io_uring always hands a shutdown to one of its worker threads, and
                    // that hop cost more than the system call (Connection: close, 5 interleaved rounds by hand).
                    HalfClose();

                    break;
                }
            }
        }
        finally
        {
            // Completing our reader makes the application's next FlushAsync report IsCompleted.
            await output.CompleteAsync();
            if (reset)
            {
                _aborted = true;
                CloseSocket(reset: true);
            }

            DirectionDone();
        }
    }

    private Exception? ReceiveError(int errno)
    {
        if (_closingGracefully)
        {
            // DisposeAsync closed the socket after the application completed Input: no reader will see an error, so
            // building one (a SocketException looks up the system's message) would be wasted on every connection.
            return null;
        }

        var inner = new SocketException((int)SocketNative.ToSocketError(errno));
        if (!_aborted && IsResetErrno(errno))
        {
            return new ConnectionResetException(inner.Message, inner);
        }

        if (_aborted || errno is SocketNative.EBADF or SocketNative.EINVAL or ENOTSOCK)
        {
            return _abortReason ?? new ConnectionAbortedException("The connection was closed locally.", inner);
        }

        return new IOException($"Receive failed: {inner.Message}", inner);
    }

    private static bool IsResetErrno(int errno) =>
        errno is SocketNative.ECONNRESET or SocketNative.ECONNABORTED or SocketNative.EPIPE or SocketNative.ESHUTDOWN;
}

using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Proxy.Core.Detection;

/// <summary>How a <see cref="SocketPeeker.PeekAsync"/> ended.</summary>
public enum PeekOutcome : byte
{
    /// <summary>At least the requested number of bytes was peeked (or the buffer is full).</summary>
    Enough,

    /// <summary>The client closed its side (FIN) with fewer bytes queued: no more will come.</summary>
    ClientClosed,

    /// <summary>The deadline passed with fewer bytes queued.</summary>
    TimedOut,

    /// <summary>The socket failed (reset, closed locally, cancelled).</summary>
    Failed,
}

/// <summary>The outcome of a peek and how many bytes the buffer holds (all outcomes but Failed may hold some).</summary>
public readonly record struct PeekResult(PeekOutcome Outcome, int BytesPeeked);

/// <summary>
/// Peeks (<c>recv(MSG_PEEK)</c>) an accepted socket whose transport has not started, waiting until at least a given
/// number of bytes is queued: the second detection step of a stage that needs more than the classifier's first bytes
/// (the TLS ClientHello for SNI routing, in Proxy.Tls). Nothing is consumed, so splice(2) stays possible afterwards.
/// <para>On Linux it waits in the detector's epoll waiter with <c>SO_RCVLOWAT</c> = the bytes wanted, so it wakes once,
/// when they are there (or at FIN, or at the deadline); elsewhere it polls (1 ms doubling to 50 ms) and cannot see a
/// FIN after a partial start (it waits for the deadline).</para>
/// </summary>
public sealed class SocketPeeker
{
    private static readonly TimeSpan FirstPollDelay = TimeSpan.FromMilliseconds(1);
    private static readonly TimeSpan MaxPollDelay = TimeSpan.FromMilliseconds(50);
    private static readonly Lazy<SocketPeeker> s_shared = new(static () => new SocketPeeker(ReadableWaiter.IsSupported ? ReadableWaiter.Shared : null));

    private readonly ReadableWaiter? _waiter;

    /// <param name="waiter">The epoll waiter; null uses the portable polling fallback.</param>
    internal SocketPeeker(ReadableWaiter? waiter)
    {
        _waiter = waiter;
    }

    /// <summary>The peeker of the process (it shares the detector's waiter thread on Linux).</summary>
    public static SocketPeeker Shared => s_shared.Value;

    /// <summary>
    /// Peeks into <paramref name="buffer"/> once at least <paramref name="minBytes"/> (clamped to 1..buffer length) are
    /// queued, the client closed, the socket failed, or <paramref name="deadlineMs"/> (<see cref="Environment.TickCount64"/>)
    /// passed. Never throws for socket errors.
    /// </summary>
    public ValueTask<PeekResult> PeekAsync(Socket socket, Memory<byte> buffer, int minBytes, long deadlineMs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (buffer.IsEmpty)
        {
            throw new ArgumentException("The peek buffer is empty.", nameof(buffer));
        }

        minBytes = Math.Clamp(minBytes, 1, buffer.Length);

        // Fast path: what the client sent is usually queued already.
        var n = PeekNow(socket, buffer.Span);
        if (TryFinish(n, minBytes, previous: -1, out var result))
        {
            return new ValueTask<PeekResult>(result);
        }

        return _waiter is not null
            ? PeekWithWaiterAsync(socket, buffer, minBytes, Math.Max(n, 0), deadlineMs, cancellationToken)
            : PeekPollingAsync(socket, buffer, minBytes, Math.Max(n, 0), deadlineMs, cancellationToken);
    }

    /// <summary>
    /// -1: nothing queued (EAGAIN); -2: error; 0: FIN; else the bytes peeked. <paramref name="previous"/> is what the
    /// last peek saw after a readiness event (-1 when there was none): no growth after "readable" means FIN.
    /// </summary>
    private static bool TryFinish(int n, int minBytes, int previous, out PeekResult result)
    {
        result = n switch
        {
            -2 => new PeekResult(PeekOutcome.Failed, 0),
            0 => new PeekResult(PeekOutcome.ClientClosed, 0),
            _ when n >= minBytes => new PeekResult(PeekOutcome.Enough, n),
            _ when previous >= 0 && n >= 0 && n <= previous => new PeekResult(PeekOutcome.ClientClosed, n),
            _ => default,
        };
        return n == -2 || n == 0 || n >= minBytes || (previous >= 0 && n >= 0 && n <= previous);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PeekResult> PeekWithWaiterAsync(Socket socket, Memory<byte> buffer, int minBytes, int peeked, long deadlineMs, CancellationToken cancellationToken)
    {
        while (true)
        {
            var outcome = await _waiter!.WaitAsync(socket, minBytes, deadlineMs, cancellationToken).ConfigureAwait(false);
            if (outcome == WaitOutcome.TimedOut)
            {
                return new PeekResult(PeekOutcome.TimedOut, Math.Max(PeekNow(socket, buffer.Span), peeked));
            }

            if (outcome != WaitOutcome.Readable)
            {
                return new PeekResult(PeekOutcome.Failed, 0);
            }

            var n = PeekNow(socket, buffer.Span);
            if (n == -1)
            {
                continue; // spurious wakeup
            }

            // Readable with fewer bytes than the low-water mark means FIN (or an error): finish when nothing new came.
            if (TryFinish(n, minBytes, peeked, out var result))
            {
                return result;
            }

            peeked = n;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<PeekResult> PeekPollingAsync(Socket socket, Memory<byte> buffer, int minBytes, int peeked, long deadlineMs, CancellationToken cancellationToken)
    {
        var delay = FirstPollDelay;
        try
        {
            while (true)
            {
                var left = deadlineMs - Environment.TickCount64;
                if (left <= 0)
                {
                    return new PeekResult(PeekOutcome.TimedOut, peeked);
                }

                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(left, (long)delay.TotalMilliseconds)), cancellationToken).ConfigureAwait(false);
                var n = PeekNow(socket, buffer.Span);
                if (TryFinish(n, minBytes, previous: -1, out var result))
                {
                    return result;
                }

                delay = n > peeked ? FirstPollDelay : (delay >= MaxPollDelay / 2 ? MaxPollDelay : delay * 2);
                peeked = Math.Max(n, peeked);
            }
        }
        catch (OperationCanceledException)
        {
            return new PeekResult(PeekOutcome.Failed, 0);
        }
    }

    private static int PeekNow(Socket socket, Span<byte> buffer)
    {
        if (ReadableWaiter.IsSupported)
        {
            return ReadableWaiter.PeekNonBlocking(socket, buffer);
        }

        try
        {
            if (socket.Available == 0)
            {
                return -1;
            }

            var n = socket.Receive(buffer, SocketFlags.Peek, out var error);
            return error == SocketError.Success ? n : error == SocketError.WouldBlock ? -1 : -2;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return -2;
        }
    }
}

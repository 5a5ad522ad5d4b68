namespace Proxy.Core.Transport;

/// <summary>
/// Tuning for <see cref="SocketTransportFactory"/> (accepted connections) and the upstream connector
/// (outgoing connections). All sizes are per connection unless noted.
/// </summary>
public sealed record SocketTransportOptions
{
    /// <summary>
    /// Size of one pooled, pinned buffer block, and so the most one receive can read. Default 32 KiB:
    /// eight times Kestrel's 4 KiB reads, which cuts the syscalls per MiB of opaque TCP by the same factor
    /// while an idle connection still holds no block (see <see cref="WaitForDataBeforeAllocatingBuffer"/>).
    /// </summary>
    public int ReadBufferSize { get; init; } = 32 * 1024;

    /// <summary>
    /// Event-loop threads that drive every socket (Linux: our own epoll loops, see <c>Transport/Epoll</c>); 0 uses
    /// .NET's socket engine instead (the only choice elsewhere). Default 1: one loop does all the socket work of a
    /// sidecar, as HAProxy's <c>nbthread 1</c> does, without cross-thread wakeups; raise it for a proxy that
    /// must use more than one core.
    /// </summary>
    public int IoThreads { get; init; } = 1;

    /// <summary>
    /// With the event loops (<see cref="IoThreads"/> above 0): each loop issues the <c>recv</c> and <c>send</c> calls
    /// of one pass over its events with a single <c>io_uring_enter</c> instead of one system call each, where the
    /// kernel offers io_uring (Linux 6.1+, not blocked by seccomp); elsewhere the calls are made one by one as
    /// without it. Readiness still comes from epoll. Default true.
    /// </summary>
    public bool IoUring { get; init; } = true;

    /// <summary>
    /// Number of I/O queues that run transport-side pipe continuations when
    /// <see cref="InlineScheduling"/> is off. Connections are spread round-robin. 0 = use the thread pool.
    /// </summary>
    public int IoQueueCount { get; init; } = Math.Min(Environment.ProcessorCount, 16);

    /// <summary>Listen backlog (pending, not yet accepted connections).</summary>
    public int Backlog { get; init; } = 512;

    /// <summary>Disable Nagle's algorithm (TCP_NODELAY) on every socket.</summary>
    public bool NoDelay { get; init; } = true;

    /// <summary>
    /// Run pipe continuations inline on the thread that completed the socket operation (Kestrel's
    /// <c>UnsafePreferInlineScheduling</c>). Measured as the largest single CPU saving for the proxy
    /// (no thread hops). The price: no code on the forwarding path may block. Pair it with
    /// <see cref="SocketEngineSetup.Configure(bool)"/> so socket completions themselves run inline.
    /// </summary>
    public bool InlineScheduling { get; init; } = true;

    /// <summary>
    /// Issue a zero-byte receive and rent a buffer only once data is there, so idle connections
    /// (most of a sidecar's keep-alive connections) hold no buffer block. Costs one extra, cheap syscall per read.
    /// </summary>
    public bool WaitForDataBeforeAllocatingBuffer { get; init; } = true;

    /// <summary>
    /// Bytes received but not yet consumed by the application before the transport stops reading
    /// (backpressure toward the peer). Default 256 KiB = 8 blocks: enough to keep a socket busy while the
    /// other side drains, but a quarter of Kestrel's 1 MiB because a sidecar holds two connections per
    /// client connection and thousands of them; <c>null</c> = unlimited.
    /// </summary>
    public long? MaxReadBufferSize { get; init; } = 256 * 1024;

    /// <summary>
    /// Bytes written by the application but not yet sent before its <c>FlushAsync</c> waits.
    /// Default 64 KiB (Kestrel's value): two blocks, so one can be sent while the next is filled; a forwarder
    /// that waits here stops reading the other side, which is exactly the backpressure we want. <c>null</c> = unlimited.
    /// </summary>
    public long? MaxWriteBufferSize { get; init; } = 64 * 1024;

    /// <summary>Accept IPv4 as well when bound to <c>[::]</c> (IPv6Any).</summary>
    public bool DualMode { get; init; } = true;

    /// <summary>Most pooled blocks kept for reuse (per pool); blocks returned beyond this go to the GC.</summary>
    public int MaxPooledBlocks { get; init; } = 4096;

    internal void Validate()
    {
        if (ReadBufferSize < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(ReadBufferSize), ReadBufferSize, "ReadBufferSize must be at least 1024 bytes.");
        }

        if (IoThreads is < 0 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(IoThreads), IoThreads, "IoThreads must be 0 (the .NET socket engine) to 64.");
        }

        if (IoQueueCount < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(IoQueueCount), IoQueueCount, "IoQueueCount must be 0 or more.");
        }

        if (Backlog < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Backlog), Backlog, "Backlog must be 0 or more.");
        }

        if (MaxReadBufferSize is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxReadBufferSize), MaxReadBufferSize, "MaxReadBufferSize must be positive or null.");
        }

        if (MaxWriteBufferSize is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxWriteBufferSize), MaxWriteBufferSize, "MaxWriteBufferSize must be positive or null.");
        }
    }
}

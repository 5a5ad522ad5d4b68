using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// The event loops of the process. Connections are spread over them round-robin, except that a connection opened
/// from a loop's own thread (an upstream dialled while serving a request) joins that loop, so a request and the
/// upstream exchange it causes usually stay on one thread.
/// </summary>
internal sealed class EpollLoopGroup
{
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<(int Threads, bool Batch), EpollLoopGroup> s_shared = [];

    private readonly EpollLoop[] _loops;
    private int _next;

    private EpollLoopGroup(int threads, bool batch, ILogger logger)
    {
        _loops = new EpollLoop[threads];
        for (var i = 0; i < threads; i++)
        {
            _loops[i] = new EpollLoop($"epoll-{i}", logger, batch);
        }
    }

    /// <summary>Whether the platform has epoll (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>
    /// The process-wide group of <paramref name="threads"/> loops, created on first use and kept for the life of
    /// the process (its threads are background threads that sleep in epoll_wait when idle). With
    /// <paramref name="batchSystemCalls"/> each loop issues its socket calls through an io_uring where one is available
    /// (<see cref="IoUringBatch"/>).
    /// </summary>
    public static EpollLoopGroup GetShared(int threads, ILogger? logger = null, bool batchSystemCalls = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        lock (s_lock)
        {
            if (!s_shared.TryGetValue((threads, batchSystemCalls), out var group))
            {
                group = new EpollLoopGroup(threads, batchSystemCalls, logger ?? NullLogger.Instance);
                s_shared[(threads, batchSystemCalls)] = group;
            }

            return group;
        }
    }

    /// <summary>The caller's own loop when it runs on one of this group's threads, else the next one in turn.</summary>
    public EpollLoop Pick()
    {
        if (EpollLoop.Current is { } current && Array.IndexOf(_loops, current) >= 0)
        {
            return current;
        }

        return _loops[(int)((uint)Interlocked.Increment(ref _next) % (uint)_loops.Length)];
    }
}

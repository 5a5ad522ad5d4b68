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
    private static readonly Dictionary<int, EpollLoopGroup> s_shared = [];

    private readonly EpollLoop[] _loops;
    private int _next;

    private EpollLoopGroup(int threads, ILogger logger)
    {
        _loops = new EpollLoop[threads];
        for (var i = 0; i < threads; i++)
        {
            _loops[i] = new EpollLoop($"epoll-{i}", logger);
        }
    }

    /// <summary>Whether the platform has epoll (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>
    /// The process-wide group of <paramref name="threads"/> loops, created on first use and kept for the life of
    /// the process (its threads are background threads that sleep in epoll_wait when idle).
    /// </summary>
    public static EpollLoopGroup GetShared(int threads, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        lock (s_lock)
        {
            if (!s_shared.TryGetValue(threads, out var group))
            {
                group = new EpollLoopGroup(threads, logger ?? NullLogger.Instance);
                s_shared[threads] = group;
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

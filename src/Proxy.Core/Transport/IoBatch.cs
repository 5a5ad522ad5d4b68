using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>
/// The end of the current I/O batch, for protocol code that wants to coalesce work (e.g. one flush, so one send,
/// for the frames of many streams): on an event loop thread, work can be deferred until the loop has handled every
/// event of the batch it is in; elsewhere there is no batch and the caller does the work at once.
/// </summary>
public static class IoBatch
{
    /// <summary>
    /// Runs <paramref name="action"/> on this thread after the current event batch, if this is an event loop thread;
    /// false otherwise (do it now). The action must not block.
    /// </summary>
    public static bool TryDefer(Action<object?> action, object? state)
    {
        if (EpollLoop.Current is not { } loop)
        {
            return false;
        }

        loop.Defer(action, state);
        return true;
    }
}

using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>
/// A scope in which the current thread flows no execution context: an async method started inside it captures none,
/// so each of its resumptions calls the state machine directly instead of going through
/// <c>ExecutionContext.RunInternal</c>. For the long-lived loops of connections (socket pumps, frame loops, response
/// pumps), resumed many times per request: a loop started on a thread-pool thread would otherwise capture the default
/// context and pass that on to everything it starts.
/// </summary>
/// <remarks>
/// The proxy keeps no state in async-locals, so nothing is lost. Start the method inside the scope and leave it before
/// awaiting (the scope must end on the thread that began it). Nested scopes are no-ops.
/// </remarks>
public readonly ref struct SuppressedFlow
{
    private readonly bool _restore;

    private SuppressedFlow(bool restore) => _restore = restore;

    /// <summary>Suppresses flow on this thread unless it already is.</summary>
    public static SuppressedFlow Begin()
    {
        if (ExecutionContext.IsFlowSuppressed())
        {
            return default;
        }

        _ = ExecutionContext.SuppressFlow();
        return new SuppressedFlow(restore: true);
    }

    /// <summary>
    /// On an event loop thread, suppresses flow for the rest of the current resumption: for the top of a long-lived
    /// loop's body. A state machine captures the thread's context again at every await, so a loop once resumed with
    /// one (woken from a thread-pool thread, whose default context it then captured) would keep it for good: each of
    /// its resumptions runs under that context (<c>ExecutionContext.RunInternal</c> makes it the thread's), and the
    /// next await captures it again. Suppressing here breaks that circle at its next resumption on a loop; the runtime
    /// restores the loop thread's own (suppressed) context when that resumption returns. Elsewhere it does nothing, so
    /// a pool thread is never left without flow for the rest of its work item.
    /// </summary>
    public static void Ensure()
    {
        if (EpollLoop.Current is not null && !ExecutionContext.IsFlowSuppressed())
        {
            _ = ExecutionContext.SuppressFlow();
        }
    }

    /// <summary>Restores flow if <see cref="Begin"/> suppressed it.</summary>
    public void Dispose()
    {
        if (_restore)
        {
            ExecutionContext.RestoreFlow();
        }
    }
}

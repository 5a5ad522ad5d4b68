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
    /// Suppresses flow on this thread, not to be restored: for the top of a long-lived loop's body. A state machine
    /// captures the thread's context again at every await, so a loop once resumed with one (from a thread-pool
    /// thread, or inline from another state machine that carries one) would otherwise keep it for good. Resumed
    /// under a context, the runtime restores the thread's own when this resumption returns; resumed directly on a
    /// pool thread, the pool resets it after the work item; on an event loop flow is suppressed already.
    /// </summary>
    public static void Ensure()
    {
        if (!ExecutionContext.IsFlowSuppressed())
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

using System.Collections.Concurrent;
using System.IO.Pipelines;

namespace Proxy.Core.Transport;

/// <summary>
/// A <see cref="PipeScheduler"/> that runs its work items in order on one thread-pool work item at a
/// time, so the continuations of a group of connections batch up instead of each taking a separate
/// thread-pool hop (Kestrel's IOQueue idea). Used only when inline scheduling is off.
/// </summary>
internal sealed class IoQueue : PipeScheduler, IThreadPoolWorkItem
{
    private readonly ConcurrentQueue<Work> _work = new();
    private int _doingWork;

    public override void Schedule(Action<object?> action, object? state)
    {
        _work.Enqueue(new Work(action, state));

        // Queue ourselves only if no drain is running or about to run.
        if (Interlocked.CompareExchange(ref _doingWork, 1, 0) == 0)
        {
            System.Threading.ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        while (true)
        {
            while (_work.TryDequeue(out var item))
            {
                item.Action(item.State);
            }

            Volatile.Write(ref _doingWork, 0);

            // A Schedule that raced with the reset above may have seen 1 and not queued us: re-check.
            if (_work.IsEmpty || Interlocked.CompareExchange(ref _doingWork, 1, 0) != 0)
            {
                return;
            }
        }
    }

    private readonly record struct Work(Action<object?> Action, object? State);
}

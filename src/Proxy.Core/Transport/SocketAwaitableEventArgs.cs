using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace Proxy.Core.Transport;

/// <summary>
/// One reusable <see cref="SocketAsyncEventArgs"/> per direction per connection, awaitable as a
/// <see cref="ValueTask{Int32}"/> without allocating: the connection's receive or send loop awaits it
/// over and over. At most one operation may be outstanding at a time.
/// </summary>
internal sealed class SocketAwaitableEventArgs : SocketAsyncEventArgs, IValueTaskSource<int>
{
    // Linux IOV_MAX is 1024; a few dozen segments already make a send of more than 1 MiB.
    internal const int MaxSendSegments = 64;

    private readonly PipeScheduler _scheduler;
    private ManualResetValueTaskSourceCore<int> _source;
    private List<ArraySegment<byte>>? _segments;

    public SocketAwaitableEventArgs(PipeScheduler scheduler)
        : base(unsafeSuppressExecutionContextFlow: true)
    {
        _scheduler = scheduler;

        // Continuations run on the thread that completed the operation (or on the scheduler below).
        _source.RunContinuationsAsynchronously = false;
    }

    /// <summary>Receives into <paramref name="buffer"/>; an empty buffer waits until data (or FIN) is there.</summary>
    public ValueTask<int> ReceiveAsync(Socket socket, Memory<byte> buffer)
    {
        SetBuffer(buffer);
        _source.Reset();
        return socket.ReceiveAsync(this) ? new ValueTask<int>(this, _source.Version) : CompletedSynchronously();
    }

    /// <summary>Sends all of <paramref name="buffer"/> (at most <see cref="MaxSendSegments"/> segments).</summary>
    public ValueTask<int> SendAsync(Socket socket, in ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            if (BufferList is not null)
            {
                BufferList = null;
            }

            SetBuffer(MemoryMarshal.AsMemory(buffer.First));
        }
        else
        {
            SetBuffer(null, 0, 0);
            var segments = _segments ??= new List<ArraySegment<byte>>(MaxSendSegments);
            segments.Clear();
            foreach (var memory in buffer)
            {
                if (!MemoryMarshal.TryGetArray(memory, out var segment))
                {
                    // Our pool and ArrayPool both hand out arrays; anything else is a bug.
                    throw new InvalidOperationException("Send buffers must be array-backed.");
                }

                segments.Add(segment);
            }

            // The setter copies the list into the event args' own reused list: no allocation.
            BufferList = segments;
        }

        _source.Reset();
        return socket.SendAsync(this) ? new ValueTask<int>(this, _source.Version) : CompletedSynchronously();
    }

    private ValueTask<int> CompletedSynchronously() =>
        SocketError == SocketError.Success
            ? new ValueTask<int>(BytesTransferred)
            : ValueTask.FromException<int>(new SocketException((int)SocketError));

    protected override void OnCompleted(SocketAsyncEventArgs e)
    {
        if (ReferenceEquals(_scheduler, PipeScheduler.Inline))
        {
            Complete();
        }
        else
        {
            _scheduler.Schedule(static state => ((SocketAwaitableEventArgs)state!).Complete(), this);
        }
    }

    private void Complete()
    {
        if (SocketError == SocketError.Success)
        {
            _source.SetResult(BytesTransferred);
        }
        else
        {
            _source.SetException(new SocketException((int)SocketError));
        }
    }

    int IValueTaskSource<int>.GetResult(short token) => _source.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _source.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _source.OnCompleted(continuation, state, token, flags);
}

using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// One direction's <c>recv</c> or <c>send</c> of an <see cref="EpollSocket"/> queued on its loop's
/// <see cref="IoUringBatch"/>: awaited by the connection's receive or send loop, completed by the loop inline, reused
/// for the socket's next call (one at a time per direction, as the loops make them).
/// </summary>
/// <remarks>
/// From queueing to completion it pins the buffer. A reference on the socket's handle is taken only for the
/// <c>io_uring_enter</c> itself (<see cref="Acquire"/>), as for a plain system call: the descriptor number cannot be
/// reused by another socket while the kernel uses it, and a close made on the loop thread between queueing and issuing
/// (which waits for every reference to go) does not wait for a call that only this thread could issue.
/// </remarks>
internal sealed unsafe class SocketOperation : IoUringOperation, IValueTaskSource<int>
{
    private readonly SafeHandle _handle;
    private ManualResetValueTaskSourceCore<int> _core;
    private MemoryHandle _pin;
    private bool _referenced;

    public SocketOperation(SafeHandle handle)
    {
        _handle = handle;
        _core.RunContinuationsAsynchronously = false;
    }

    /// <summary>Queues the call on <paramref name="ring"/>; false (nothing held) when the ring is full.</summary>
    public bool TryQueue(IoUringBatch ring, int fd, ReadOnlyMemory<byte> buffer, bool send, int sendFlags, out ValueTask<int> pending)
    {
        pending = default;
        var pin = buffer.Pin();
        var queued = send
            ? ring.TryQueueSend(fd, (byte*)pin.Pointer, buffer.Length, sendFlags, this)
            : ring.TryQueueReceive(fd, (byte*)pin.Pointer, buffer.Length, this);
        if (!queued)
        {
            pin.Dispose();
            return false;
        }

        Arm(pin, out pending);
        return true;
    }

    private void Arm(MemoryHandle pin, out ValueTask<int> pending)
    {
        _pin = pin;
        _referenced = false;
        _core.Reset();
        pending = new ValueTask<int>(this, _core.Version);
    }

    public override bool Acquire()
    {
        var referenced = false;
        try
        {
            _handle.DangerousAddRef(ref referenced);
        }
        catch (ObjectDisposedException)
        {
        }

        _referenced = referenced;
        return referenced;
    }

    public override void Release()
    {
        _pin.Dispose();
        _pin = default;
        if (_referenced)
        {
            _referenced = false;
            _handle.DangerousRelease();
        }
    }

    public override void Complete(int result) => _core.SetResult(result);

    int IValueTaskSource<int>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

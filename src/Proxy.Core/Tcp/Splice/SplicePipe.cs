using System.Runtime.InteropServices;

namespace Proxy.Core.Tcp.Splice;

/// <summary>
/// A kernel pipe used as the zero-copy buffer of one direction: socket -> pipe (splice in), pipe -> socket
/// (splice out). Non-blocking and close-on-exec; its capacity can be raised with F_SETPIPE_SZ when the kernel allows.
/// </summary>
internal sealed class SplicePipe : IDisposable
{
    private readonly FileDescriptorHandle _readEnd;
    private readonly FileDescriptorHandle _writeEnd;

    private SplicePipe(FileDescriptorHandle readEnd, FileDescriptorHandle writeEnd, int capacity)
    {
        _readEnd = readEnd;
        _writeEnd = writeEnd;
        ReadFd = readEnd.Fd;
        WriteFd = writeEnd.Fd;
        Capacity = capacity;
    }

    public int ReadFd { get; }

    public int WriteFd { get; }

    /// <summary>Capacity in bytes as reported by the kernel (F_GETPIPE_SZ).</summary>
    public int Capacity { get; private set; }

    /// <summary>False once the kernel refused to grow this pipe; it is not asked again.</summary>
    public bool CanGrow { get; private set; } = true;

    /// <summary>
    /// Raises the capacity to <paramref name="capacity"/> (F_SETPIPE_SZ; allowed while the pipe holds data). Fails
    /// above /proc/sys/fs/pipe-max-size or, for an unprivileged user, past /proc/sys/fs/pipe-user-pages-soft.
    /// </summary>
    public bool TryGrow(int capacity)
    {
        if (!CanGrow || capacity <= Capacity)
        {
            return false;
        }

        if (SpliceNative.Fcntl(WriteFd, SpliceNative.F_SETPIPE_SZ, capacity) < 0)
        {
            CanGrow = false;
            return false;
        }

        int actual = SpliceNative.Fcntl(WriteFd, SpliceNative.F_GETPIPE_SZ, 0);
        if (actual > Capacity)
        {
            Capacity = actual;
        }

        return true;
    }

    /// <summary>
    /// Creates a pipe of the kernel's default capacity (64 KiB), or <paramref name="requestedCapacity"/> when
    /// positive; returns null and the errno when the kernel refuses (e.g. EMFILE).
    /// </summary>
    public static unsafe SplicePipe? TryCreate(int requestedCapacity, out int errno)
    {
        int* fds = stackalloc int[2];
        if (SpliceNative.Pipe2(fds, SpliceNative.O_NONBLOCK | SpliceNative.O_CLOEXEC) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }

        var readEnd = new FileDescriptorHandle(fds[0]);
        var writeEnd = new FileDescriptorHandle(fds[1]);
        if (requestedCapacity > 0)
        {
            // May fail with EPERM above /proc/sys/fs/pipe-max-size or past the per-user pipe page limit; the
            // default capacity still works, only with more wake-ups per byte, so the failure is tolerated.
            _ = SpliceNative.Fcntl(fds[1], SpliceNative.F_SETPIPE_SZ, requestedCapacity);
        }

        int capacity = SpliceNative.Fcntl(fds[1], SpliceNative.F_GETPIPE_SZ, 0);
        errno = 0;
        return new SplicePipe(readEnd, writeEnd, capacity > 0 ? capacity : 65536);
    }

    public void Dispose()
    {
        _readEnd.Dispose();
        _writeEnd.Dispose();
    }
}

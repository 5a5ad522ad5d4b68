using System.Runtime.InteropServices;

namespace Proxy.Core.Tcp.Splice;

/// <summary>Owns one Linux file descriptor (a pipe end, an epoll or eventfd) and closes it exactly once.</summary>
internal sealed class FileDescriptorHandle : SafeHandle
{
    public FileDescriptorHandle(int fd)
        : base(invalidHandleValue: -1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => handle == -1;

    /// <summary>The raw descriptor; valid while this handle is not disposed.</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => SpliceNative.Close((int)handle) == 0;
}

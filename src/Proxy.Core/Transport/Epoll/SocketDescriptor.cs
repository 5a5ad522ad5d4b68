using System.Runtime.InteropServices;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// A socket descriptor the transport accepted itself (<c>accept4</c>) and owns: released with a plain <c>close()</c>,
/// after the last system call that holds a reference on it returns (so the number cannot be reused under a call).
/// Not a <see cref="System.Net.Sockets.SafeSocketHandle"/>: disposing one of those outside its <see cref="System.Net.Sockets.Socket"/>
/// closes abortively (SO_LINGER 0, the peer sees RST), where a finished connection must end with FIN.
/// </summary>
internal sealed class SocketDescriptor : SafeHandle
{
    public SocketDescriptor(int fd)
        : base(new IntPtr(-1), ownsHandle: true)
    {
        SetHandle(fd);
    }

    public override bool IsInvalid => handle == new IntPtr(-1);

    /// <summary>The descriptor number (valid while a reference is held, or before the handle is disposed).</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle()
    {
        // On Linux the descriptor is gone even when close reports an error (EINTR, EIO): nothing to retry.
        SpliceNative.Close((int)handle);
        return true;
    }
}

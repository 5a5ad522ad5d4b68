using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Proxy.Core.Transport.Epoll;

/// <summary>
/// The socket system calls the epoll transport makes itself (Linux). Source-generated P/Invoke, AOT-safe; every
/// call that can fail sets the last P/Invoke error, read with <see cref="Marshal.GetLastPInvokeError"/>.
/// </summary>
internal static unsafe partial class SocketNative
{
    private const string Libc = "libc";

    public const int EINTR = 4;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EINVAL = 22;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int EPIPE = 32;
    public const int EADDRNOTAVAIL = 99;
    public const int ENETUNREACH = 101;
    public const int ECONNABORTED = 103;
    public const int ECONNRESET = 104;
    public const int ENOBUFS = 105;
    public const int ENOTCONN = 107;
    public const int ESHUTDOWN = 108;
    public const int ETIMEDOUT = 110;
    public const int ECONNREFUSED = 111;
    public const int EHOSTDOWN = 112;
    public const int EHOSTUNREACH = 113;
    public const int EALREADY = 114;
    public const int EINPROGRESS = 115;

    /// <summary>No SIGPIPE when the peer is gone: the call fails with EPIPE instead.</summary>
    public const int MSG_NOSIGNAL = 0x4000;

    /// <summary>Most iovecs one <c>sendmsg</c> carries (Linux IOV_MAX is 1024; 64 blocks are 2 MiB at the default size).</summary>
    public const int MaxIov = 64;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    // recv, send and sendmsg run on non-blocking sockets: they return in microseconds and never wait, which is what
    // SuppressGCTransition requires; skipping the GC mode switch saves a measurable share of the proxy's user time.
    // Without the transition no runtime code runs between the call and the caller's next statement, so callers read
    // errno themselves (Marshal.GetLastSystemError) and only on failure, instead of SetLastError's two thread-local
    // writes on every call.
    [LibraryImport(Libc, EntryPoint = "recv")]
    [SuppressGCTransition]
    public static partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport(Libc, EntryPoint = "send")]
    [SuppressGCTransition]
    public static partial nint Send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport(Libc, EntryPoint = "sendmsg")]
    [SuppressGCTransition]
    public static partial nint SendMsg(int fd, MsgHdr* message, int flags);

    /// <summary>Room for the largest address a TCP socket has (sockaddr_in6, 28 bytes).</summary>
    public const int SockaddrMaxLength = 28;

    // accept4 and getsockname run on a non-blocking listener or a connected socket: they never wait, but they are not
    // per-request calls, so the ordinary GC transition and SetLastError are kept.
    [LibraryImport(Libc, EntryPoint = "accept4", SetLastError = true)]
    public static partial int Accept4(int fd, byte* address, uint* addressLength, int flags);

    [LibraryImport(Libc, EntryPoint = "getsockname", SetLastError = true)]
    public static partial int GetSockName(int fd, byte* address, uint* addressLength);

    /// <summary>The <see cref="SocketError"/> .NET would report for a Linux errno (the ones sockets produce).</summary>
    public static SocketError ToSocketError(int errno) => errno switch
    {
        0 => SocketError.Success,
        EINTR => SocketError.Interrupted,
        EBADF => SocketError.OperationAborted,
        EAGAIN => SocketError.WouldBlock,
        EACCES => SocketError.AccessDenied,
        EINVAL => SocketError.InvalidArgument,
        ENOMEM => SocketError.NoBufferSpaceAvailable,
        ENFILE => SocketError.TooManyOpenSockets,
        EMFILE => SocketError.TooManyOpenSockets,
        EPIPE => SocketError.Shutdown,
        EADDRNOTAVAIL => SocketError.AddressNotAvailable,
        ENETUNREACH => SocketError.NetworkUnreachable,
        ECONNABORTED => SocketError.ConnectionAborted,
        ECONNRESET => SocketError.ConnectionReset,
        ENOBUFS => SocketError.NoBufferSpaceAvailable,
        ENOTCONN => SocketError.NotConnected,
        ESHUTDOWN => SocketError.Shutdown,
        ETIMEDOUT => SocketError.TimedOut,
        ECONNREFUSED => SocketError.ConnectionRefused,
        EHOSTDOWN => SocketError.HostDown,
        EHOSTUNREACH => SocketError.HostUnreachable,
        EALREADY => SocketError.AlreadyInProgress,
        EINPROGRESS => SocketError.InProgress,
        _ => SocketError.SocketError,
    };
}

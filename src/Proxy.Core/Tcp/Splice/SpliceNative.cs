using System.Runtime.InteropServices;

namespace Proxy.Core.Tcp.Splice;

/// <summary>
/// Linux system calls used by the splice path. Source-generated P/Invoke (AOT-safe); every call that can fail
/// sets the last P/Invoke error, read with <see cref="Marshal.GetLastPInvokeError"/>.
/// </summary>
internal static unsafe partial class SpliceNative
{
    private const string Libc = "libc";

    // errno values (Linux, identical on x64 and arm64).
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EPIPE = 32;
    public const int ECONNRESET = 104;

    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int F_SETPIPE_SZ = 1031;
    public const int F_GETPIPE_SZ = 1032;

    public const uint SPLICE_F_MOVE = 1;
    public const uint SPLICE_F_NONBLOCK = 2;
    public const uint SPLICE_F_MORE = 4;

    public const int EPOLL_CLOEXEC = O_CLOEXEC;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001;
    public const uint EPOLLOUT = 0x004;
    public const uint EPOLLERR = 0x008;
    public const uint EPOLLHUP = 0x010;
    public const uint EPOLLRDHUP = 0x2000;
    public const uint EPOLLET = 1u << 31;

    public const int EFD_CLOEXEC = O_CLOEXEC;
    public const int EFD_NONBLOCK = O_NONBLOCK;

    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_CLOEXEC = O_CLOEXEC;
    public const int SOL_SOCKET = 1;
    public const int SO_ERROR = 4;
    public const int SO_LINGER = 13;
    public const int SHUT_WR = 1;

    /// <summary>
    /// struct epoll_event is packed (12 bytes) on x86-64 and naturally aligned (16 bytes) elsewhere; the reactor
    /// reads it through these offsets instead of a struct so one build serves both.
    /// </summary>
    public static readonly int EpollEventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    public static readonly int EpollDataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    [LibraryImport(Libc, EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(int fdIn, nint offIn, int fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport(Libc, EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "shutdown", SetLastError = true)]
    public static partial int Shutdown(int fd, int how);

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(int fd, int level, int name, void* value, uint* length);

    [LibraryImport(Libc, EntryPoint = "socketpair", SetLastError = true)]
    public static partial int SocketPair(int domain, int type, int protocol, int* fds);

    public const nuint FIONREAD = 0x541B;

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, int* value);

    /// <summary>Bytes waiting in a socket's receive queue (FIONREAD); 0 on error.</summary>
    public static int BytesAvailable(int fd)
    {
        int value = 0;
        return Ioctl(fd, FIONREAD, &value) == 0 ? value : 0;
    }

    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate1(int flags);

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static partial int EpollCtl(int epfd, int op, int fd, void* epollEvent);

    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int EpollWait(int epfd, void* events, int maxEvents, int timeoutMs);

    [LibraryImport(Libc, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initialValue, int flags);

    /// <summary>Adds or modifies an epoll registration carrying <paramref name="data"/>.</summary>
    public static int EpollControl(int epfd, int op, int fd, uint events, ulong data)
    {
        byte* ev = stackalloc byte[16];
        *(uint*)ev = events;
        *(ulong*)(ev + EpollDataOffset) = data;
        return EpollCtl(epfd, op, fd, ev);
    }

    /// <summary>
    /// An epoll instance with a non-blocking eventfd registered for reading under <paramref name="wakeToken"/>: what
    /// every loop thread here needs to sleep in epoll_wait and be woken from another thread.
    /// </summary>
    /// <exception cref="IOException">A descriptor could not be created or registered.</exception>
    public static (FileDescriptorHandle Epoll, FileDescriptorHandle Wake) CreateEpollWithWake(ulong wakeToken)
    {
        var epfd = EpollCreate1(EPOLL_CLOEXEC);
        if (epfd < 0)
        {
            throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
        }

        var efd = EventFd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0 || EpollControl(epfd, EPOLL_CTL_ADD, efd, EPOLLIN, wakeToken) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (efd >= 0)
            {
                Close(efd);
            }

            Close(epfd);
            throw new IOException($"eventfd/epoll_ctl failed: errno {errno}");
        }

        return (new FileDescriptorHandle(epfd), new FileDescriptorHandle(efd));
    }

    /// <summary>Makes the next close() of the socket send RST instead of FIN (SO_LINGER {1, 0}).</summary>
    public static void SetLingerZero(int fd)
    {
        // struct linger { int l_onoff; int l_linger; }
        int* linger = stackalloc int[2];
        linger[0] = 1;
        linger[1] = 0;
        _ = SetSockOpt(fd, SOL_SOCKET, SO_LINGER, linger, 8);
    }

    /// <summary>Reads and clears the pending socket error (SO_ERROR); 0 when none.</summary>
    public static int TakeSocketError(int fd)
    {
        int error = 0;
        uint length = sizeof(int);
        return GetSockOpt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 ? error : Marshal.GetLastPInvokeError();
    }

    /// <summary>Sets O_NONBLOCK on a descriptor; returns 0 or the errno.</summary>
    public static int SetNonBlocking(int fd)
    {
        int flags = Fcntl(fd, F_GETFL, 0);
        if (flags < 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        if ((flags & O_NONBLOCK) != 0)
        {
            return 0;
        }

        return Fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }
}

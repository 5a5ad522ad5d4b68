using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Proxy.Core.Tcp.Splice;

/// <summary>
/// Zero-copy opaque TCP forwarding on Linux: each direction moves socket -> pipe -> socket with splice(2), so
/// payload bytes never enter user space. A small epoll reactor (one thread by default, see
/// <see cref="SpliceForwarderOptions.ReactorCount"/>) drives all sessions; no thread per connection.
/// <para>Semantics (the same as the pipe path):</para>
/// <list type="bullet">
/// <item>Byte-exact both ways. FIN from one side is passed on as shutdown(SHUT_WR) to the other side once
/// everything before it was delivered; the other direction keeps flowing (half-close). The session ends when
/// both directions have ended: outcome <see cref="TcpForwardOutcome.Completed"/>.</item>
/// <item>A reset (or any other socket error) on one side resets the other (SO_LINGER {1,0}, close): outcome
/// <see cref="TcpForwardOutcome.DownstreamReset"/> or <see cref="TcpForwardOutcome.UpstreamReset"/>.</item>
/// <item>No byte moved in either direction for <see cref="TcpForwardOptions.IdleTimeout"/>: both sides are
/// reset, outcome <see cref="TcpForwardOutcome.IdleTimeout"/>.</item>
/// <item>Cancellation (or disposing the forwarder) resets both sides: outcome
/// <see cref="TcpForwardOutcome.Aborted"/>.</item>
/// <item>Bytes are reported to the <see cref="IForwardObserver"/> once per splice call that delivered them, and
/// totalled in the <see cref="TcpForwardResult"/>.</item>
/// <item>The forwarder owns both sockets from the call on and closes them when the session ends.</item>
/// </list>
/// <para>The sockets must not have been read by anyone (bytes already in a user-space buffer would be lost) and
/// must not be used by the caller while forwarding: no async operation may be started on them. The forwarder
/// switches them to O_NONBLOCK. A socket that .NET already registered with its own epoll engine (after an async
/// connect, say) still works: .NET's engine only receives wake-ups it ignores, since it has no operation queued.</para>
/// </summary>
public sealed class SpliceForwarder : IRawSocketForwarder, IDisposable
{
    private static readonly Lazy<bool> s_supported = new(Probe);

    private readonly SpliceForwarderOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private SpliceReactor[]? _reactors;
    private int _next;
    private bool _disposed;

    public SpliceForwarder(SpliceForwarderOptions? options = null, ILogger<SpliceForwarder>? logger = null)
    {
        _options = options ?? new SpliceForwarderOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.ReactorCount, 1, nameof(options));
                ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxPooledPipesPerReactor, nameof(options));
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Linux, and a splice through a pipe between two sockets worked (probed once per process).</summary>
    public static bool IsSupportedOnThisMachine => s_supported.Value;

    /// <inheritdoc />
    public bool IsSupported => s_supported.Value;

    /// <summary>Sessions being forwarded right now, over all reactors.</summary>
    public int ActiveSessions
    {
        get
        {
            SpliceReactor[]? reactors = Volatile.Read(ref _reactors);
            int total = 0;
            if (reactors is not null)
            {
                foreach (SpliceReactor reactor in reactors)
                {
                    total += reactor.ActiveSessions;
                }
            }

            return total;
        }
    }

    /// <inheritdoc />
    public ValueTask<TcpForwardResult> ForwardAsync(Socket downstream, Socket upstream, TcpForwardOptions options, IForwardObserver? observer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(downstream);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(options);
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("splice(2) forwarding needs Linux with splice support.");
        }

        SpliceReactor reactor = NextReactor();
        var session = new SpliceSession(downstream, upstream, options, observer, _options.MaxPipeCapacity);
        int errno = SpliceNative.SetNonBlocking(session.DownstreamFd);
        if (errno == 0)
        {
            errno = SpliceNative.SetNonBlocking(session.UpstreamFd);
        }

        if (errno != 0)
        {
            session.CloseSockets(resetDownstream: true, resetUpstream: true);
            throw new IOException($"Cannot make the sockets non-blocking: errno {errno}.");
        }

        if (cancellationToken.IsCancellationRequested)
        {
            session.CloseSockets(resetDownstream: true, resetUpstream: true);
            return new ValueTask<TcpForwardResult>(new TcpForwardResult(TcpForwardOutcome.Aborted, 0, 0));
        }

        session.Reactor = reactor;
        if (cancellationToken.CanBeCanceled)
        {
            // Registered before the Add is queued: an abort can then never be queued ahead of a session that has
            // no registration yet, and one that fires early is seen by the reactor through AbortRequested.
            session.Cancellation = cancellationToken.UnsafeRegister(static state => ((SpliceSession)state!).RequestAbort(), session);
        }

        reactor.Add(session);
        return new ValueTask<TcpForwardResult>(session.Completion.Task);
    }

    /// <summary>Stops the reactors; sessions still running end with <see cref="TcpForwardOutcome.Aborted"/>.</summary>
    public void Dispose()
    {
        SpliceReactor[]? reactors;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            reactors = _reactors;
        }

        if (reactors is not null)
        {
            foreach (SpliceReactor reactor in reactors)
            {
                reactor.Dispose();
            }
        }
    }

    private SpliceReactor NextReactor()
    {
        SpliceReactor[]? reactors = Volatile.Read(ref _reactors);
        if (reactors is null || _disposed)
        {
            reactors = StartReactors();
        }

        SpliceReactor reactor = reactors.Length == 1 ? reactors[0] : reactors[(int)((uint)Interlocked.Increment(ref _next) % (uint)reactors.Length)];
        ObjectDisposedException.ThrowIf(reactor.IsStopping, this);
        return reactor;
    }

    private SpliceReactor[] StartReactors()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_reactors is null)
            {
                var reactors = new SpliceReactor[_options.ReactorCount];
                for (int i = 0; i < reactors.Length; i++)
                {
                    reactors[i] = new SpliceReactor(i, _options.MaxPooledPipesPerReactor, _logger);
                }

                Volatile.Write(ref _reactors, reactors);
            }

            return _reactors;
        }
    }

    /// <summary>Moves one byte socket -> pipe -> socket over a local socket pair to prove splice works here.</summary>
    private static unsafe bool Probe()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        int* sockets = stackalloc int[2];
        try
        {
            if (SpliceNative.SocketPair(SpliceNative.AF_UNIX, SpliceNative.SOCK_STREAM | SpliceNative.SOCK_CLOEXEC, 0, sockets) != 0)
            {
                return false;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }

        SplicePipe? pipe = SplicePipe.TryCreate(0, out _);
        try
        {
            if (pipe is null)
            {
                return false;
            }

            byte value = 0x5A;
            if (SpliceNative.Write(sockets[0], &value, 1) != 1
                || SpliceNative.Splice(sockets[1], 0, pipe.WriteFd, 0, 1, SpliceNative.SPLICE_F_NONBLOCK) != 1
                || SpliceNative.Splice(pipe.ReadFd, 0, sockets[1], 0, 1, SpliceNative.SPLICE_F_NONBLOCK) != 1)
            {
                return false;
            }

            byte echoed = 0;
            return SpliceNative.Read(sockets[0], &echoed, 1) == 1 && echoed == value;
        }
        finally
        {
            pipe?.Dispose();
            _ = SpliceNative.Close(sockets[0]);
            _ = SpliceNative.Close(sockets[1]);
        }
    }
}

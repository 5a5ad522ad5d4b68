namespace Proxy.Core.Tcp.Splice;

/// <summary>Tuning of <see cref="SpliceForwarder"/>, shared by all its sessions.</summary>
public sealed record SpliceForwarderOptions
{
    /// <summary>Reactor threads (each owns one epoll instance); sessions are spread round-robin. Default 1.</summary>
    public int ReactorCount { get; init; } = 1;

    /// <summary>
    /// Capacity a direction's pipe may grow to (F_SETPIPE_SZ) once that direction fills its pipe, i.e. carries bulk
    /// data. Pipes start at the kernel default (64 KiB, 16 pages). 0 (the default) never grows them.
    /// Measured (iperf3 -n 2G through the proxy on loopback, 2 cores, 3 interleaved runs): growing to 1 MiB cut the
    /// proxy's own CPU by ~10-25% but moved more than that onto the sender and receiver (proxy+iperf3 total
    /// 2.9-3.6 s per 2 GiB with 1 MiB, 2.5-2.9 s with 64 KiB) and did not raise throughput, so growth is off.
    /// The kernel refuses sizes above /proc/sys/fs/pipe-max-size and, for an unprivileged user, growth past
    /// /proc/sys/fs/pipe-user-pages-soft; the pipe then simply keeps its size.
    /// </summary>
    public int MaxPipeCapacity { get; init; }

    /// <summary>Empty pipes each reactor keeps for reuse instead of closing them (two per session).</summary>
    public int MaxPooledPipesPerReactor { get; init; } = 128;
}

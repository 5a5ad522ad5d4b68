namespace Proxy.Core.Tcp.Splice;

/// <summary>Tuning of <see cref="SpliceForwarder"/>, shared by all its sessions.</summary>
public sealed record SpliceForwarderOptions
{
    /// <summary>Reactor threads (each owns one epoll instance); sessions are spread round-robin. Default 1.</summary>
    public int ReactorCount { get; init; } = 1;

    /// <summary>
    /// Requested capacity of each direction's pipe (F_SETPIPE_SZ). The kernel rounds it up to a power-of-two
    /// number of pages and refuses sizes above /proc/sys/fs/pipe-max-size (then the 64 KiB default stays).
    /// 0 keeps the default.
    /// </summary>
    public int PipeCapacity { get; init; } = 256 * 1024;

    /// <summary>Empty pipes each reactor keeps for reuse instead of closing them (two per session).</summary>
    public int MaxPooledPipesPerReactor { get; init; } = 128;
}

using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Tests.Tcp.Splice;

public sealed class SplicePipeTests
{
    [Fact]
    public void TryCreate_Default_HasKernelDefaultCapacity()
    {
        using SplicePipe? pipe = SplicePipe.TryCreate(0, out int errno);

        Assert.NotNull(pipe);
        Assert.Equal(0, errno);
        Assert.Equal(64 * 1024, pipe.Capacity);
        Assert.NotEqual(pipe.ReadFd, pipe.WriteFd);
    }

    [Fact]
    public void TryGrow_ToPipeMaxSize_RaisesCapacity()
    {
        int max = int.Parse(File.ReadAllText("/proc/sys/fs/pipe-max-size").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        using SplicePipe pipe = SplicePipe.TryCreate(0, out _)!;

        Assert.True(pipe.TryGrow(max));
        Assert.Equal(max, pipe.Capacity);
        Assert.False(pipe.TryGrow(max)); // already there: nothing to do
    }

    [Fact]
    public void TryGrow_AbovePipeMaxSize_FailsOnceThenStopsAsking()
    {
        int max = int.Parse(File.ReadAllText("/proc/sys/fs/pipe-max-size").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        using SplicePipe pipe = SplicePipe.TryCreate(0, out _)!;

        // Root may exceed pipe-max-size (CAP_SYS_RESOURCE) up to the hard kernel limit; ask for more than that.
        Assert.False(pipe.TryGrow(int.MaxValue));
        Assert.False(pipe.CanGrow);
        Assert.Equal(64 * 1024, pipe.Capacity);
        Assert.False(pipe.TryGrow(max));
    }
}

using Proxy.Core.Transport;

namespace Proxy.Core.Tests.Transport;

public sealed class PinnedBlockMemoryPoolTests
{
    [Fact]
    public void Rent_AfterReturn_ReusesTheSameBlock()
    {
        using var pool = new PinnedBlockMemoryPool(1024);
        var first = pool.Rent();
        var memory = first.Memory;
        first.Dispose();
        Assert.Equal(1, pool.PooledCount);

        using var second = pool.Rent();

        Assert.Same(first, second);
        Assert.True(memory.Span == second.Memory.Span);
        Assert.Equal(0, pool.PooledCount);
    }

    [Fact]
    public void Rent_BlocksAreArrayBackedAndFullSize()
    {
        using var pool = new PinnedBlockMemoryPool(4096);
        using var block = pool.Rent(100);

        Assert.Equal(4096, block.Memory.Length);
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(block.Memory, out _));
    }

    [Fact]
    public void Rent_LargerThanBlock_Throws()
    {
        using var pool = new PinnedBlockMemoryPool(1024);

        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(2048));
    }

    [Fact]
    public void Dispose_Twice_ReturnsBlockOnce()
    {
        using var pool = new PinnedBlockMemoryPool(1024, maxPooledBlocks: 10);
        var block = pool.Rent();
        block.Dispose();
        block.Dispose();

        Assert.Equal(1, pool.PooledCount);
    }

    [Fact]
    public void Return_BeyondMaxPooled_DropsBlocks()
    {
        using var pool = new PinnedBlockMemoryPool(1024, maxPooledBlocks: 1);
        var a = pool.Rent();
        var b = pool.Rent();
        a.Dispose();
        b.Dispose();

        Assert.Equal(1, pool.PooledCount);
    }
}

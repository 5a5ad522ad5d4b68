using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Proxy.Core.Transport;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of fixed-size blocks allocated on the pinned object heap, so the socket
/// engine never has to pin them and the GC never moves them. Blocks and their owner objects are reused:
/// renting in steady state allocates nothing. Kestrel's equivalent is internal, hence this small one.
/// </summary>
public sealed class PinnedBlockMemoryPool : MemoryPool<byte>
{
    private readonly ConcurrentQueue<Block> _blocks = new();
    private readonly int _maxPooled;
    private int _pooledCount;
    private bool _disposed;

    public PinnedBlockMemoryPool(int blockSize, int maxPooledBlocks = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxPooledBlocks);
        BlockSize = blockSize;
        _maxPooled = maxPooledBlocks;
    }

    /// <summary>Size of every block.</summary>
    public int BlockSize { get; }

    public override int MaxBufferSize => BlockSize;

    /// <summary>Blocks currently kept for reuse (for tests and diagnostics).</summary>
    public int PooledCount => Volatile.Read(ref _pooledCount);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (minBufferSize > BlockSize)
        {
            throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize, $"Blocks are {BlockSize} bytes.");
        }

        if (_blocks.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _pooledCount);
            block.Lease();
            return block;
        }

        var fresh = new Block(this, GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true));
        fresh.Lease();
        return fresh;
    }

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        _blocks.Clear();
    }

    private void Return(Block block)
    {
        if (_disposed || Interlocked.Increment(ref _pooledCount) > _maxPooled)
        {
            Interlocked.Decrement(ref _pooledCount);
            return;
        }

        _blocks.Enqueue(block);
    }

    private sealed class Block : MemoryManager<byte>
    {
        private readonly PinnedBlockMemoryPool _pool;
        private readonly byte[] _array;
        private int _leased;

        public Block(PinnedBlockMemoryPool pool, byte[] array)
        {
            _pool = pool;
            _array = array;
        }

        public void Lease() => Volatile.Write(ref _leased, 1);

        // Memory over the pinned array itself (not this manager), so MemoryMarshal.TryGetArray works and
        // the socket engine can use it for buffer lists without pinning.
        public override Memory<byte> Memory => _array;

        public override Span<byte> GetSpan() => _array;

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            // The array lives on the pinned object heap: no GCHandle needed.
            return new MemoryHandle((byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_array)) + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
            // Pipe disposes each owner exactly once; the flag makes a double dispose harmless.
            if (Interlocked.Exchange(ref _leased, 0) == 1)
            {
                _pool.Return(this);
            }
        }
    }
}

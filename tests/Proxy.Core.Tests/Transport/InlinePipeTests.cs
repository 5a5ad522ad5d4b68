using System.Buffers;
using System.IO.Pipelines;
using Proxy.Core.Transport;
using Xunit;

namespace Proxy.Core.Tests.Transport;

public class InlinePipeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// The same random sequence of operations on a <see cref="Pipe"/> (inline schedulers) and an <see cref="InlinePipe"/>
    /// with the same thresholds: every read returns the same bytes and flags, every flush the same result, and each
    /// operation is pending on one exactly when it is pending on the other.
    /// </summary>
    public static TheoryData<int, int, int, int> Cases()
    {
        var cases = new TheoryData<int, int, int, int>();
        int[] pauses = [0, 64, 200, 1000, 37];
        int[] segments = [16, 64, 4096, 128, 8];
        for (var seed = 1; seed <= 60; seed++)
        {
            var pause = pauses[seed % pauses.Length];
            cases.Add(seed, pause, pause / (2 + (seed % 3)), segments[(seed / 5) % segments.Length]);
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task RandomOperations_BehaveLikePipe(int seed, int pause, int resume, int segment)
    {
        var random = new Random(seed);
        var reference = new Pipe(new PipeOptions(pauseWriterThreshold: pause, resumeWriterThreshold: resume, minimumSegmentSize: segment, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
        // Odd seeds: an idle pipe gives its last segment back (as Pipe does); even: the writer's segment is kept.
        var pipe = new InlinePipe(minimumSegmentSize: segment, pauseWriterThreshold: pause, resumeWriterThreshold: resume, keepSegment: seed % 2 == 0);
        ValueTask<ReadResult>? pendingReadA = null, pendingReadB = null;
        ValueTask<FlushResult>? pendingFlushA = null, pendingFlushB = null;
        ReadResult? heldA = null, heldB = null;
        byte next = 0;
        var writerDone = false;
        long consumedTotal = 0, examinedTotal = 0;
        var log = new List<string>();
        void Check(bool expected, bool actual, string what)
        {
            if (expected != actual)
            {
                Assert.Fail($"{what}: Pipe {expected}, InlinePipe {actual}; last steps:\n{string.Join("\n", log.TakeLast(20))}");
            }
        }

        for (var step = 0; step < 4000; step++)
        {
            var op = random.Next(8);
            log.Add($"{step}: op {op} unflushed {reference.Writer.UnflushedBytes}/{pipe.Writer.UnflushedBytes} held={heldA is not null} pr={pendingReadA is not null} pf={pendingFlushA is not null}");
            switch (op)
            {
                case 0 or 1 when !writerDone && pendingFlushA is null:
                {
                    // Write 1..300 bytes in pieces of random size hints.
                    var count = random.Next(1, 300);
                    while (count > 0)
                    {
                        var hint = random.Next(0, 100);
                        var a = reference.Writer.GetSpan(hint);
                        var b = pipe.Writer.GetSpan(hint);
                        var n = Math.Min(count, Math.Min(a.Length, b.Length));
                        for (var i = 0; i < n; i++)
                        {
                            a[i] = b[i] = next++;
                        }

                        reference.Writer.Advance(n);
                        pipe.Writer.Advance(n);
                        count -= n;
                    }

                    Assert.Equal(reference.Writer.UnflushedBytes, pipe.Writer.UnflushedBytes);
                    break;
                }

                case 2 when !writerDone && pendingFlushA is null:
                {
                    var a = reference.Writer.FlushAsync();
                    var b = pipe.Writer.FlushAsync();
                    Check(a.IsCompleted, b.IsCompleted, "flush completed");
                    if (a.IsCompleted)
                    {
                        Assert.Equal(Flags(await a), Flags(await b));
                    }
                    else
                    {
                        pendingFlushA = a;
                        pendingFlushB = b;
                    }

                    break;
                }

                case 3 or 4 when pendingReadA is null && heldA is null:
                {
                    if (random.Next(2) == 0)
                    {
                        var a = reference.Reader.TryRead(out var ra);
                        var b = pipe.Reader.TryRead(out var rb);
                        Check(a, b, "TryRead");
                        if (a)
                        {
                            AssertSame(ra, rb);
                            heldA = ra;
                            heldB = rb;
                        }
                    }
                    else
                    {
                        var a = reference.Reader.ReadAsync();
                        var b = pipe.Reader.ReadAsync();
                        Check(a.IsCompleted, b.IsCompleted, "ReadAsync completed");
                        if (a.IsCompleted)
                        {
                            heldA = await a;
                            heldB = await b;
                            AssertSame(heldA.Value, heldB.Value);
                        }
                        else
                        {
                            pendingReadA = a;
                            pendingReadB = b;
                        }
                    }

                    break;
                }

                case 5 when heldA is not null:
                {
                    var a = heldA.Value.Buffer;
                    var b = heldB!.Value.Buffer;
                    // Examined positions only move forward (as a real reader's do; Pipe's accounting assumes it).
                    var consumed = random.Next(0, (int)a.Length + 1);
                    var floor = (int)Math.Clamp(examinedTotal - consumedTotal, consumed, a.Length);
                    var examined = random.Next(floor, (int)a.Length + 1);
                    if (random.Next(3) == 0)
                    {
                        examined = (int)a.Length;
                    }

                    examinedTotal = Math.Max(examinedTotal, consumedTotal + examined);
                    consumedTotal += consumed;

                    log.Add($"   advance {consumed}/{examined} of {a.Length}");
                    reference.Reader.AdvanceTo(a.GetPosition(consumed), a.GetPosition(examined));
                    pipe.Reader.AdvanceTo(b.GetPosition(consumed), b.GetPosition(examined));
                    heldA = heldB = null;
                    break;
                }

                case 6:
                    if (random.Next(2) == 0)
                    {
                        reference.Reader.CancelPendingRead();
                        pipe.Reader.CancelPendingRead();
                    }
                    else
                    {
                        reference.Writer.CancelPendingFlush();
                        pipe.Writer.CancelPendingFlush();
                    }

                    break;
                case 7 when !writerDone && random.Next(200) == 0:
                    reference.Writer.Complete();
                    pipe.Writer.Complete();
                    writerDone = true;
                    break;
            }

            // Whatever was pending completes (or not) the same way.
            if (pendingReadA is { } pra)
            {
                Check(pra.IsCompleted, pendingReadB!.Value.IsCompleted, "pending read completed");
                if (pra.IsCompleted)
                {
                    heldA = await pra;
                    heldB = await pendingReadB.Value;
                    AssertSame(heldA.Value, heldB.Value);
                    pendingReadA = pendingReadB = null;
                }
            }

            if (pendingFlushA is { } pfa)
            {
                Check(pfa.IsCompleted, pendingFlushB!.Value.IsCompleted, "pending flush completed");
                if (pfa.IsCompleted)
                {
                    Assert.Equal(Flags(await pfa), Flags(await pendingFlushB.Value));
                    pendingFlushA = pendingFlushB = null;
                }
            }
        }

        static (bool, bool) Flags(FlushResult r) => (r.IsCanceled, r.IsCompleted);
    }

    private static void AssertSame(ReadResult a, ReadResult b)
    {
        Assert.Equal(a.IsCanceled, b.IsCanceled);
        Assert.Equal(a.IsCompleted, b.IsCompleted);
        Assert.Equal(a.Buffer.ToArray(), b.Buffer.ToArray());
    }

    [Fact]
    public async Task WriterFailure_IsThrownByTheNextRead_EvenWithBytesBuffered()
    {
        var pipe = new InlinePipe();
        await pipe.Writer.WriteAsync(new byte[] { 1, 2, 3 });
        var failure = new IOException("upstream reset");
        pipe.Writer.Complete(failure);
        var thrown = await Assert.ThrowsAsync<IOException>(async () => await pipe.Reader.ReadAsync());
        Assert.Same(failure, thrown);
    }

    [Fact]
    public async Task WriterFailure_WakesAWaitingReader()
    {
        var pipe = new InlinePipe();
        var read = pipe.Reader.ReadAsync();
        Assert.False(read.IsCompleted);
        pipe.Writer.Complete(new InvalidDataException("bad"));
        Assert.True(read.IsCompleted);
        await Assert.ThrowsAsync<InvalidDataException>(async () => await read);
    }

    [Fact]
    public async Task ReaderCompleted_FlushReportsCompleted_AndDropsTheBytes()
    {
        var pool = new CountingPool();
        var pipe = new InlinePipe(pool, minimumSegmentSize: 16);
        pipe.Reader.Complete();
        for (var i = 0; i < 100; i++)
        {
            var result = await pipe.Writer.WriteAsync(new byte[40]);
            Assert.True(result.IsCompleted);
        }

        // Nothing accumulates for a reader that is gone: at most the writer's segment and one more are out.
        Assert.InRange(pool.Outstanding, 0, 2);
        pipe.Writer.Complete();
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public async Task ReaderFailure_IsThrownByTheWritersFlush()
    {
        var pipe = new InlinePipe();
        pipe.Reader.Complete(new IOException("client gone"));
        pipe.Writer.Write(new byte[] { 1 });
        await Assert.ThrowsAsync<IOException>(async () => await pipe.Writer.FlushAsync());
    }

    [Fact]
    public async Task Flush_PausesAtTheThreshold_AndResumesBelowTheResumeThreshold()
    {
        var pipe = new InlinePipe(pauseWriterThreshold: 100, resumeWriterThreshold: 50);
        var flush = pipe.Writer.WriteAsync(new byte[120]);
        Assert.False(flush.IsCompleted);

        var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Reader.AdvanceTo(read.Buffer.GetPosition(60));
        Assert.False(flush.IsCompleted); // 60 left: not below 50

        read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Reader.AdvanceTo(read.Buffer.GetPosition(20), read.Buffer.End);
        Assert.True(flush.IsCompleted);
        Assert.False((await flush).IsCompleted);
    }

    [Fact]
    public async Task TokenCancelsAPendingRead_AndAPendingFlush()
    {
        var pipe = new InlinePipe(pauseWriterThreshold: 10, resumeWriterThreshold: 5);
        using var readCancel = new CancellationTokenSource();
        var read = pipe.Reader.ReadAsync(readCancel.Token);
        readCancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await read.AsTask().WaitAsync(Timeout));

        using var flushCancel = new CancellationTokenSource();
        pipe.Writer.Write(new byte[20]);
        var flush = pipe.Writer.FlushAsync(flushCancel.Token);
        Assert.False(flush.IsCompleted);
        flushCancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await flush.AsTask().WaitAsync(Timeout));

        // The pipe is still usable: the bytes are there.
        var after = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(20, after.Buffer.Length);
    }

    [Fact]
    public async Task Reset_NeedsBothEndsCompleted_AndReturnsAllMemory()
    {
        var pool = new CountingPool();
        var pipe = new InlinePipe(pool, minimumSegmentSize: 16);
        pipe.Writer.Write(new byte[100]);
        Assert.Throws<InvalidOperationException>(pipe.Reset);
        pipe.Writer.Complete();
        Assert.NotEqual(0, pool.Outstanding);
        pipe.Reader.Complete();
        Assert.Equal(0, pool.Outstanding);
        pipe.Reset();

        pipe.Writer.Write(new byte[] { 7 });
        Assert.False((await pipe.Writer.FlushAsync()).IsCompleted);
        Assert.True(pipe.Reader.TryRead(out var result));
        Assert.Equal(new byte[] { 7 }, result.Buffer.ToArray());
    }

    [Fact]
    public async Task SteadyStateMessages_RentNoNewSegments()
    {
        var pool = new CountingPool();
        var pipe = new InlinePipe(pool, minimumSegmentSize: 4096, keepSegment: true);
        for (var i = 0; i < 1000; i++)
        {
            await pipe.Writer.WriteAsync(new byte[100]);
            var read = await pipe.Reader.ReadAsync();
            Assert.Equal(100, read.Buffer.Length);
            pipe.Reader.AdvanceTo(read.Buffer.End);
        }

        // One segment per 40 messages of 100 bytes (the writer's segment is kept until it is full), none kept idle.
        Assert.InRange(pool.Rented, 1, 30);
        Assert.InRange(pool.Outstanding, 1, 1);
    }

    [Fact]
    public async Task WithoutKeepSegment_AnIdlePipeHoldsNoMemory()
    {
        var pool = new CountingPool();
        var pipe = new InlinePipe(pool, minimumSegmentSize: 4096, keepSegment: false);
        for (var i = 0; i < 100; i++)
        {
            await pipe.Writer.WriteAsync(new byte[100]);
            var read = await pipe.Reader.ReadAsync();
            pipe.Reader.AdvanceTo(read.Buffer.End);
            Assert.Equal(0, pool.Outstanding);
        }

        // A writer holding memory it asked for keeps it, even when the reader consumes everything meanwhile.
        await pipe.Writer.WriteAsync(new byte[5]);
        Assert.Equal(1, pool.Outstanding);
        var memory = pipe.Writer.GetMemory(10);
        var first = await pipe.Reader.ReadAsync();
        pipe.Reader.AdvanceTo(first.Buffer.End);
        Assert.Equal(1, pool.Outstanding);
        memory.Span[0] = 42;
        pipe.Writer.Advance(1);
        await pipe.Writer.FlushAsync();
        var after = await pipe.Reader.ReadAsync();
        Assert.Equal(new byte[] { 42 }, after.Buffer.ToArray());
        pipe.Reader.AdvanceTo(after.Buffer.End);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public async Task ReaderOnAnotherThread_GetsEveryByteInOrder()
    {
        var pipe = new InlinePipe(minimumSegmentSize: 64, pauseWriterThreshold: 1000, resumeWriterThreshold: 300);
        const int Total = 1_000_000;
        var writer = Task.Run(async () =>
        {
            var random = new Random(7);
            var value = 0;
            while (value < Total)
            {
                var span = pipe.Writer.GetSpan(random.Next(1, 200));
                var n = Math.Min(span.Length, Math.Min(Total - value, random.Next(1, 500)));
                for (var i = 0; i < n; i++)
                {
                    span[i] = (byte)(value++ % 251);
                }

                pipe.Writer.Advance(n);
                await pipe.Writer.FlushAsync();
            }

            pipe.Writer.Complete();
        });
        var reader = Task.Run(async () =>
        {
            long seen = 0;
            while (true)
            {
                var result = await pipe.Reader.ReadAsync();
                foreach (var segment in result.Buffer)
                {
                    foreach (var b in segment.Span)
                    {
                        Assert.Equal((byte)(seen++ % 251), b);
                    }
                }

                pipe.Reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            pipe.Reader.Complete();
            return seen;
        });
        await writer.WaitAsync(Timeout);
        Assert.Equal(Total, await reader.WaitAsync(Timeout));
    }

    private sealed class CountingPool : MemoryPool<byte>
    {
        private int _outstanding;
        private int _rented;

        public int Outstanding => Volatile.Read(ref _outstanding);

        public int Rented => Volatile.Read(ref _rented);

        public override int MaxBufferSize => 64 * 1024;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            Interlocked.Increment(ref _outstanding);
            Interlocked.Increment(ref _rented);
            return new Owner(this, new byte[Math.Max(minBufferSize, 16)]);
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(CountingPool pool, byte[] array) : IMemoryOwner<byte>
        {
            private int _disposed;

            public Memory<byte> Memory => array;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0)
                {
                    Interlocked.Decrement(ref pool._outstanding);
                }
            }
        }
    }
}

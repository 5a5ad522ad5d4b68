using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Tcp;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Tcp;

/// <summary>PipeForwarder semantics over in-memory pipes (no sockets).</summary>
public sealed class PipeForwarderTests
{
    /// <summary>One side of the forwarder: what the forwarder sees, and the peer's ends.</summary>
    private sealed class Side
    {
        private readonly Pipe _toProxy = new(new PipeOptions(useSynchronizationContext: false));
        private readonly Pipe _fromProxy = new(new PipeOptions(useSynchronizationContext: false));

        public Side()
        {
            ProxyEnd = new DuplexPipe(_toProxy.Reader, _fromProxy.Writer);
        }

        public IDuplexPipe ProxyEnd { get; }

        public PipeWriter PeerWriter => _toProxy.Writer;

        public PipeReader PeerReader => _fromProxy.Reader;

        public async Task SendAsync(string text) =>
            await PeerWriter.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask().WaitAsync(TestTimeouts.Short);

        /// <summary>Reads until the forwarder completes this side's output; returns the text.</summary>
        public async Task<string> ReceiveToEndAsync()
        {
            while (true)
            {
                var result = await PeerReader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
                if (result.IsCompleted)
                {
                    var text = Encoding.ASCII.GetString(result.Buffer.ToArray());
                    PeerReader.AdvanceTo(result.Buffer.End);
                    return text;
                }

                PeerReader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            }
        }

        private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input { get; } = input;

            public PipeWriter Output { get; } = output;
        }
    }

    private sealed class CountingObserver : IForwardObserver
    {
        public long Up;
        public long Down;

        public void OnBytesToUpstream(int count) => Interlocked.Add(ref Up, count);

        public void OnBytesToDownstream(int count) => Interlocked.Add(ref Down, count);
    }

    [Fact]
    public async Task ForwardAsync_FinEachWay_CopiesBytesKeepsOtherDirectionOpenAndCompletes()
    {
        var client = new Side();
        var upstream = new Side();
        var observer = new CountingObserver();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), observer, CancellationToken.None).AsTask();

        await client.SendAsync("request");
        await client.PeerWriter.CompleteAsync();
        Assert.Equal("request", await upstream.ReceiveToEndAsync());
        Assert.False(forward.IsCompleted);

        // Half-closed: the answer still flows back.
        await upstream.SendAsync("response");
        await upstream.PeerWriter.CompleteAsync();
        Assert.Equal("response", await client.ReceiveToEndAsync());

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, 7, 8), result);
        Assert.Equal(7, observer.Up);
        Assert.Equal(8, observer.Down);
    }

    [Fact]
    public async Task ForwardAsync_DownstreamFails_ResetsUpstreamAndStopsOtherDirection()
    {
        var client = new Side();
        var upstream = new Side();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), null, CancellationToken.None).AsTask();
        await client.SendAsync("partial");

        await client.PeerWriter.CompleteAsync(new ConnectionResetException("client reset"));

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(TcpForwardOutcome.DownstreamReset, result.Outcome);
        var upstreamSaw = await Assert.ThrowsAsync<ConnectionResetException>(() => upstream.ReceiveToEndAsync());
        Assert.Equal("client reset", upstreamSaw.Message);
        await Assert.ThrowsAsync<ConnectionResetException>(() => client.ReceiveToEndAsync());
    }

    [Fact]
    public async Task ForwardAsync_UpstreamFailsAfterClientFin_ResetsClient()
    {
        var client = new Side();
        var upstream = new Side();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), null, CancellationToken.None).AsTask();
        await client.PeerWriter.CompleteAsync();
        Assert.Equal(string.Empty, await upstream.ReceiveToEndAsync());

        await upstream.PeerWriter.CompleteAsync(new ConnectionResetException("upstream reset"));

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(TcpForwardOutcome.UpstreamReset, result.Outcome);
        await Assert.ThrowsAsync<ConnectionResetException>(() => client.ReceiveToEndAsync());
    }

    [Fact]
    public async Task ForwardAsync_DestinationStopsAccepting_CountsAsThatSideResetting()
    {
        var client = new Side();
        var upstream = new Side();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), null, CancellationToken.None).AsTask();

        // The upstream transport's send loop died: it completed its reader.
        await upstream.PeerReader.CompleteAsync();
        await client.SendAsync("lost");

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(TcpForwardOutcome.UpstreamReset, result.Outcome);
        await Assert.ThrowsAsync<ConnectionResetException>(() => client.ReceiveToEndAsync());
    }

    [Fact]
    public async Task ForwardAsync_NoBytesForIdleTimeout_AbortsBothSides()
    {
        var time = new ManualTimeProvider();
        var client = new Side();
        var upstream = new Side();
        var options = new TcpForwardOptions { IdleTimeout = TimeSpan.FromSeconds(10) };
        var forward = new PipeForwarder(time).ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, options, null, CancellationToken.None).AsTask();

        // Activity at 6 s pushes the deadline to 16 s.
        time.Advance(TimeSpan.FromSeconds(6));
        await client.SendAsync("ping");
        var read = await upstream.PeerReader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        upstream.PeerReader.AdvanceTo(read.Buffer.End);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.False(forward.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(6));

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(TcpForwardOutcome.IdleTimeout, result.Outcome);
        Assert.Equal(4, result.BytesToUpstream);
        await Assert.ThrowsAsync<ConnectionAbortedException>(() => client.ReceiveToEndAsync());
        await Assert.ThrowsAsync<ConnectionAbortedException>(() => upstream.ReceiveToEndAsync());
    }

    [Fact]
    public async Task ForwardAsync_Cancelled_AbortsBothSides()
    {
        using var cts = new CancellationTokenSource();
        var client = new Side();
        var upstream = new Side();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), null, cts.Token).AsTask();

        await cts.CancelAsync();

        var result = await forward.WaitAsync(TestTimeouts.Short);
        Assert.Equal(TcpForwardOutcome.Aborted, result.Outcome);
        await Assert.ThrowsAsync<ConnectionAbortedException>(() => client.ReceiveToEndAsync());
        await Assert.ThrowsAsync<ConnectionAbortedException>(() => upstream.ReceiveToEndAsync());
    }

    [Fact]
    public async Task ForwardAsync_ManyChunks_ArriveInOrder()
    {
        var client = new Side();
        var upstream = new Side();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions(), null, CancellationToken.None).AsTask();
        var expected = new StringBuilder();
        var receive = upstream.ReceiveToEndAsync();

        for (var i = 0; i < 1000; i++)
        {
            var chunk = $"<{i}>";
            expected.Append(chunk);
            await client.SendAsync(chunk);
        }

        await client.PeerWriter.CompleteAsync();
        Assert.Equal(expected.ToString(), await receive.WaitAsync(TestTimeouts.Short));
        await upstream.PeerWriter.CompleteAsync();
        Assert.Equal(TcpForwardOutcome.Completed, (await forward.WaitAsync(TestTimeouts.Short)).Outcome);
    }
}

/// <summary>The per-chunk path allocates nothing (measured on one thread with inline pipes).</summary>
public sealed class PipeForwarderAllocationTests
{
    private sealed class InlineSide
    {
        public InlineSide(Proxy.Core.Transport.PinnedBlockMemoryPool pool)
        {
            var options = new PipeOptions(pool, PipeScheduler.Inline, PipeScheduler.Inline, minimumSegmentSize: pool.BlockSize, useSynchronizationContext: false);
            ToProxy = new Pipe(options);
            FromProxy = new Pipe(options);
            ProxyEnd = new Duplex(ToProxy.Reader, FromProxy.Writer);
        }

        public Pipe ToProxy { get; }

        public Pipe FromProxy { get; }

        public IDuplexPipe ProxyEnd { get; }

        private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input { get; } = input;

            public PipeWriter Output { get; } = output;
        }
    }

    private sealed class NullObserver : IForwardObserver
    {
        public long Total;

        public void OnBytesToUpstream(int count) => Total += count;

        public void OnBytesToDownstream(int count) => Total += count;
    }

    [Fact]
    public async Task ForwardAsync_SteadyState_AllocatesNothingPerChunk()
    {
        using var pool = new Proxy.Core.Transport.PinnedBlockMemoryPool(4096);
        var client = new InlineSide(pool);
        var upstream = new InlineSide(pool);
        var observer = new NullObserver();
        var forward = new PipeForwarder().ForwardAsync(client.ProxyEnd, upstream.ProxyEnd, new TcpForwardOptions { IdleTimeout = Timeout.InfiniteTimeSpan }, observer, CancellationToken.None);
        var chunk = new byte[1000];

        // Everything below runs synchronously on this thread: the forwarder's continuation runs inline in FlushAsync.
        void Pump(int count)
        {
            for (var i = 0; i < count; i++)
            {
                client.ToProxy.Writer.Write(chunk);
                var flush = client.ToProxy.Writer.FlushAsync();

                // Plain checks: xunit's Assert.Equal would allocate inside the measured loop.
                if (!flush.IsCompleted || !upstream.FromProxy.Reader.TryRead(out var read) || read.Buffer.Length != chunk.Length)
                {
                    throw new InvalidOperationException("The forwarder did not copy the chunk synchronously.");
                }

                upstream.FromProxy.Reader.AdvanceTo(read.Buffer.End);
            }
        }

        Pump(200);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Pump(5000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 512, $"{allocated} bytes allocated for 5000 chunks");
        Assert.Equal(5200 * 1000, observer.Total);

        await client.ToProxy.Writer.CompleteAsync();
        await upstream.ToProxy.Writer.CompleteAsync();
        Assert.Equal(TcpForwardOutcome.Completed, (await forward.AsTask().WaitAsync(TestTimeouts.Short)).Outcome);
    }
}

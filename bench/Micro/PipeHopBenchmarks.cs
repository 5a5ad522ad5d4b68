using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Transport;

namespace Proxy.Bench.Micro;

/// <summary>
/// One message through one in-process hop, the unit the HTTP/2 paths repeat several times per request (lane, upstream
/// exchange, client stream body, socket pipes): the writer writes <see cref="Bytes"/> bytes and flushes, the reader
/// (waiting in ReadAsync, continued inline by the flush) takes them and advances past them, then waits again.
/// <c>Pipe</c>: <see cref="Pipe"/> with inline schedulers (what those hops used); <c>InlinePipeIdleFree</c>: <see cref="InlinePipe"/>
/// as the proxy uses it, giving its segment back when empty (an idle pipe holds no memory; a block is rented per
/// message, as Pipe does); <c>InlinePipe</c>: <see cref="InlinePipe"/> keeping its segment (not used by the proxy: see
/// the <c>keepSegment</c> remarks).
/// </summary>
[MemoryDiagnoser]
public class PipeHopBenchmarks
{
    private PipeReader _reader = null!;
    private PipeWriter _writer = null!;
    private Task _consumer = null!;
    private byte[] _payload = null!;

    [Params("Pipe", "InlinePipe", "InlinePipeIdleFree")]
    public string Kind { get; set; } = "Pipe";

    [Params(100)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var pool = new PinnedBlockMemoryPool(4096);
        (_reader, _writer) = Kind switch
        {
            "Pipe" => Ends(new Pipe(new PipeOptions(pool, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, pauseWriterThreshold: 0, useSynchronizationContext: false))),
            "InlinePipe" => Ends(new InlinePipe(pool, keepSegment: true)),
            _ => Ends(new InlinePipe(pool, keepSegment: false)),
        };
        _payload = new byte[Bytes];
        _consumer = ConsumeAsync(_reader);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _writer.Complete();
        _consumer.Wait(TimeSpan.FromSeconds(10));
    }

    [Benchmark]
    public void Hop()
    {
        var span = _writer.GetSpan(_payload.Length);
        _payload.CopyTo(span);
        _writer.Advance(_payload.Length);
        var flush = _writer.FlushAsync();
        if (!flush.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("An unbounded pipe's flush completes at once.");
        }
    }

    private static (PipeReader, PipeWriter) Ends(Pipe pipe) => (pipe.Reader, pipe.Writer);

    private static (PipeReader, PipeWriter) Ends(InlinePipe pipe) => (pipe.Reader, pipe.Writer);

    private static async Task ConsumeAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().ConfigureAwait(false);
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }
}

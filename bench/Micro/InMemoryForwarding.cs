using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;

namespace Proxy.Bench.Micro;

/// <summary>
/// In-memory connections for the forwarding benchmarks: pipe pairs with inline schedulers (everything runs
/// synchronously on the benchmark thread) and an upstream pool that hands out one such connection.
/// </summary>
internal static class InMemoryForwarding
{
    public static readonly PipeOptions Inline = new(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, pauseWriterThreshold: 0, useSynchronizationContext: false);

    /// <summary>A connection as the proxy sees it, and the other end (what the benchmark plays).</summary>
    public static (DefaultConnectionContext Connection, IDuplexPipe Application) CreatePair(string id)
    {
        var toProxy = new Pipe(Inline);
        var fromProxy = new Pipe(Inline);
        return (new DefaultConnectionContext(id, new Duplex(toProxy.Reader, fromProxy.Writer), new Duplex(fromProxy.Reader, toProxy.Writer)),
            new Duplex(fromProxy.Reader, toProxy.Writer));
    }

    /// <summary>Waits for a flush that did not complete at once (it does with inline pipes and no thresholds).</summary>
    public static void Complete(ValueTask<FlushResult> flush)
    {
        if (!flush.IsCompletedSuccessfully)
        {
            flush.AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// After the client side flushed a request: takes what the proxy sent upstream, answers <paramref name="response"/>
    /// (the proxy runs inline up to its next wait), and takes what reached the client. Both byte counts summed.
    /// </summary>
    public static long Relay(IDuplexPipe upstream, IDuplexPipe client, byte[] response)
    {
        var requestLength = Drain(upstream.Input, "The proxy did not send the request upstream.");
        upstream.Output.Write(response);
        Complete(upstream.Output.FlushAsync());
        return requestLength + Drain(client.Input, "The proxy did not send the response to the client.");
    }

    private static long Drain(PipeReader input, string missing)
    {
        if (!input.TryRead(out var result))
        {
            throw new InvalidOperationException(missing);
        }

        var length = result.Buffer.Length;
        input.AdvanceTo(result.Buffer.End);
        return length;
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}

/// <summary>Hands out its one in-memory connection (reused after the first rent); a discard is a benchmark bug.</summary>
internal sealed class SingleConnectionPool(PooledConnection connection) : IUpstreamPool
{
    public ValueTask<PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken) =>
        ValueTask.FromResult(PoolRentResult.Success(connection));

    public void Return(PooledConnection returned, bool reusable)
    {
        if (!reusable)
        {
            throw new InvalidOperationException("The forwarder discarded the in-memory upstream connection.");
        }

        returned.IsReused = true;
    }
}

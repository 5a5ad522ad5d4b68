using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Upstream;

namespace Proxy.Bench.Micro;

/// <summary>
/// One HTTP/1.1 GET forwarded by <see cref="Http1Forwarder"/> to a service whose upstream protocol is HTTP/2, over
/// <see cref="Http2UpstreamPool"/>: client pipes (inline) ─► forwarder ─► exchange (request parsed, HEADERS encoded)
/// ─► one multiplexed HTTP/2 connection over in-memory pipes ─► a canned server (HEADERS :status 200 +
/// content-length 13, DATA "Hello, World!" END_STREAM) ─► exchange renders the HTTP/1.1 response ─► client.
/// <see cref="InlineUpstream"/> false: the canned server's pipes use the thread pool (as a socket completing on another
/// thread), so the figure includes two hand-offs per request (to the server, back to the frame loop) and is noisy on a
/// shared machine; "Completed Work Items" counts the hops. True: the server's pipes are inline too, so a request runs
/// start to end on the benchmark's thread unless the proxy itself hops (the proxy's CPU cost alone). The allocation is
/// per forwarded request (client stream objects of <c>Http2ClientConnection</c> included).
/// </summary>
[MemoryDiagnoser]
[ThreadingDiagnoser]
public class Http2UpstreamForwardBenchmarks
{
    private static readonly PipeOptions Inline = new(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, pauseWriterThreshold: 0, useSynchronizationContext: false);
    private static readonly byte[] GetRequest = "GET /plaintext HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"u8.ToArray();
    private static readonly byte[] Body = "Hello, World!"u8.ToArray();

    // :status 200 (static index 8), content-length (static name 28, literal without indexing) "13".
    private static readonly byte[] ResponseBlock = [0x88, 0x0F, 0x0D, 0x02, (byte)'1', (byte)'3'];

    private readonly Pipe _toClient = new(Inline);
    private readonly Pipe _fromClient = new(Inline);
    private Duplex _client = null!;
    private Task _forwarding = null!;
    private Http2UpstreamPool _pool = null!;
    private CannedH2Server _server = null!;

    /// <summary>The canned server's pipes run continuations inline (no thread of its own).</summary>
    [Params(false, true)]
    public bool InlineUpstream { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var address = new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9));
        _server = new CannedH2Server(InlineUpstream);
        _pool = new Http2UpstreamPool(_server);
        var service = new ServiceRegistry([new ServiceConfig("bench", [], [address.EndPoint]) { UpstreamProtocol = UpstreamProtocol.Http2 }]).FindByName("bench")!;
        var forwarder = new Http1Forwarder("bench", new NoHttp1Pool(), http2Pool: _pool);
        var clientSide = new DefaultConnectionContext("client", new Duplex(_toClient.Reader, _fromClient.Writer), new Duplex(_fromClient.Reader, _toClient.Writer));
        _client = new Duplex(_fromClient.Reader, _toClient.Writer);
        _forwarding = forwarder.HandleAsync(clientSide, Http1Routing.ForService(service));
        Forward().AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Output.Complete();
        _forwarding.Wait(TimeSpan.FromSeconds(10));
        _pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public async ValueTask<long> Forward()
    {
        _client.Output.Write(GetRequest);
        await _client.Output.FlushAsync().ConfigureAwait(false);
        var input = _client.Input;
        while (true)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            // The response ends with the 13-byte body.
            if (buffer.Length >= Body.Length && EndsWithBody(buffer))
            {
                input.AdvanceTo(buffer.End);
                return buffer.Length;
            }

            if (result.IsCompleted)
            {
                throw new InvalidOperationException("The forwarder closed the client connection.");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool EndsWithBody(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> tail = stackalloc byte[13];
        buffer.Slice(buffer.Length - 13).CopyTo(tail);
        return tail.SequenceEqual(Body);
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class NoHttp1Pool : IUpstreamPool
    {
        public ValueTask<PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("The HTTP/1.1 pool must not be used.");

        public void Return(PooledConnection connection, bool reusable) => throw new InvalidOperationException("The HTTP/1.1 pool must not be used.");
    }

    /// <summary>The connector and the server in one: each connect gets in-memory pipes with a canned HTTP/2 server behind.</summary>
    private sealed class CannedH2Server(bool inline) : IUpstreamConnector
    {
        public ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
        {
            var options = inline ? Inline : new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false);
            var toServer = new Pipe(options);
            var toProxy = new Pipe(options);
            var connection = new DefaultConnectionContext("h2", new Duplex(toProxy.Reader, toServer.Writer), new Duplex(toServer.Reader, toProxy.Writer));
            _ = ServeAsync(toServer.Reader, toProxy.Writer);
            return ValueTask.FromResult(UpstreamConnectResult.Success(connection));
        }

        private static async Task ServeAsync(PipeReader input, PipeWriter output)
        {
            WriteFrame(output, 0x4, 0, 0, []);
            await output.FlushAsync().ConfigureAwait(false);
            var prefaceSkipped = false;
            while (true)
            {
                var result = await input.ReadAsync().ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!prefaceSkipped)
                {
                    if (buffer.Length < 24)
                    {
                        input.AdvanceTo(buffer.Start, buffer.End);
                        continue;
                    }

                    buffer = buffer.Slice(24);
                    prefaceSkipped = true;
                }

                var respond = false;
                while (buffer.Length >= 9)
                {
                    var (length, type, flags, stream) = ReadHeader(buffer);
                    if (buffer.Length < 9 + length)
                    {
                        break;
                    }

                    if (type == 0x4 && (flags & 0x1) == 0)
                    {
                        WriteFrame(output, 0x4, 0x1, 0, []);
                        respond = true;
                    }
                    else if (type == 0x1)
                    {
                        WriteFrame(output, 0x1, 0x4, stream, ResponseBlock);
                        WriteFrame(output, 0x0, 0x1, stream, Body);
                        respond = true;
                    }

                    buffer = buffer.Slice(9 + length);
                }

                input.AdvanceTo(buffer.Start, result.Buffer.End);
                if (respond)
                {
                    await output.FlushAsync().ConfigureAwait(false);
                }

                if (result.IsCompleted)
                {
                    await output.CompleteAsync().ConfigureAwait(false);
                    return;
                }
            }
        }

        private static (int Length, byte Type, byte Flags, uint Stream) ReadHeader(in ReadOnlySequence<byte> buffer)
        {
            Span<byte> header = stackalloc byte[9];
            buffer.Slice(0, 9).CopyTo(header);
            return ((header[0] << 16) | (header[1] << 8) | header[2], header[3], header[4], BinaryPrimitives.ReadUInt32BigEndian(header[5..]) & 0x7FFFFFFF);
        }

        private static void WriteFrame(PipeWriter writer, byte type, byte flags, uint streamId, ReadOnlySpan<byte> payload)
        {
            var header = writer.GetSpan(9);
            header[0] = (byte)(payload.Length >> 16);
            header[1] = (byte)(payload.Length >> 8);
            header[2] = (byte)payload.Length;
            header[3] = type;
            header[4] = flags;
            BinaryPrimitives.WriteUInt32BigEndian(header[5..], streamId);
            writer.Advance(9);
            writer.Write(payload);
        }
    }
}

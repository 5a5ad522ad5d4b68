using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Client;

namespace Proxy.Bench.Micro;

/// <summary>
/// The HTTP/2 client connection end to end over in-memory pipes, the benchmark playing the server with canned frames:
/// receiving one 16 KiB DATA frame on an open stream and consuming it (frame loop, window accounting, body pipe,
/// credit), and one whole small exchange (open, HEADERS out, HEADERS + DATA in, head, body, completion, dispose).
/// </summary>
[MemoryDiagnoser]
public class Http2ClientExchangeBenchmarks
{
    private readonly Pipe _toClient = new(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
    private readonly Pipe _toServer = new(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
    private readonly byte[] _payload = new byte[16384];
    private readonly Http2FieldList _request = new();
    private Http2ClientConnection _connection = null!;
    private Http2ClientStream _download = null!;
    private Task _drain = Task.CompletedTask;
    private uint _nextId = 3;

    [GlobalSetup]
    public void Setup()
    {
        _connection = new Http2ClientConnection(new DuplexPipe(_toClient.Reader, _toServer.Writer));
        _connection.StartAsync().GetAwaiter().GetResult();
        _drain = DrainAsync(_toServer.Reader);
        WriteFrame(Http2FrameType.Settings, 0, 0, []);
        WriteFrame(Http2FrameType.Settings, Http2Flags.Ack, 0, []);
        _request.Add(":method"u8, "GET"u8);
        _request.Add(":scheme"u8, "http"u8);
        _request.Add(":authority"u8, "svc:8080"u8);
        _request.Add(":path"u8, "/"u8);
        _connection.TryOpenStream(out _download);
        _download.WriteHeadersAsync(_request, endStream: true).AsTask().GetAwaiter().GetResult();
        // :status 200 as static index 8.
        WriteFrame(Http2FrameType.Headers, Http2Flags.EndHeaders, 1, [0x88]);
        Flush();
        _download.ReadResponseHeadAsync().AsTask().GetAwaiter().GetResult().Dispose();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _download.Dispose();
        _connection.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public ValueTask<long> ReceiveDataFrame()
    {
        WriteFrame(Http2FrameType.Data, 0, 1, _payload);
        Flush();
        return ConsumeAsync(_download.ResponseBody, _payload.Length);
    }

    [Benchmark]
    public ValueTask<int> SmallExchange() => ExchangeAsync();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<long> ConsumeAsync(PipeReader body, long wanted)
    {
        long taken = 0;
        while (taken < wanted)
        {
            var result = await body.ReadAsync().ConfigureAwait(false);
            taken += result.Buffer.Length;
            body.AdvanceTo(result.Buffer.End);
        }

        return taken;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ExchangeAsync()
    {
        _connection.TryOpenStream(out var stream);
        using (stream)
        {
            await stream.WriteHeadersAsync(_request, endStream: true).ConfigureAwait(false);
            var id = _nextId;
            _nextId += 2;
            WriteFrame(Http2FrameType.Headers, Http2Flags.EndHeaders, id, [0x88]);
            WriteFrame(Http2FrameType.Data, Http2Flags.EndStream, id, _payload.AsSpan(0, 100));
            Flush();
            using var head = await stream.ReadResponseHeadAsync().ConfigureAwait(false);
            while (true)
            {
                var result = await stream.ResponseBody.ReadAsync().ConfigureAwait(false);
                stream.ResponseBody.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            var end = await stream.Completion.ConfigureAwait(false);
            return head.StatusCode + (int)end.Kind;
        }
    }

    private void WriteFrame(Http2FrameType type, byte flags, uint streamId, ReadOnlySpan<byte> payload)
    {
        var writer = _toClient.Writer;
        var header = writer.GetSpan(9);
        header[0] = (byte)(payload.Length >> 16);
        header[1] = (byte)(payload.Length >> 8);
        header[2] = (byte)payload.Length;
        header[3] = (byte)type;
        header[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(header[5..], streamId);
        writer.Advance(9);
        writer.Write(payload);
    }

    private void Flush() => _toClient.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();

    private static async Task DrainAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().ConfigureAwait(false);
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return;
            }
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;
    }
}

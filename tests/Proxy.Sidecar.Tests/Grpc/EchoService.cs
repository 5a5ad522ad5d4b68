using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using Proxy.Sidecar.Tests.Grpc.Echo;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// The server side of <c>echo.proto</c>. Every call records what happened to it in <see cref="CallLog"/> under the
/// request header <c>x-call-id</c> (when the client sends one): started, cancelled (the server saw
/// <see cref="ServerCallContext.CancellationToken"/> fire) or completed, so a test can wait for the server's view.
/// </summary>
internal sealed class EchoService(CallLog log) : Echo.Echo.EchoBase
{
    public override async Task<EchoReply> Unary(EchoRequest request, ServerCallContext context)
    {
        var call = log.Start(context);
        await BeginAsync(request, context);
        var reply = Reply(request, context, index: 0);
        End(request, context, call);
        return reply;
    }

    public override async Task ServerStream(EchoRequest request, IServerStreamWriter<EchoReply> responseStream, ServerCallContext context)
    {
        var call = log.Start(context);
        await BeginAsync(request, context);
        for (var i = 0; i < request.Count; i++)
        {
            if (i > 0 && request.IntervalMs > 0)
            {
                await Task.Delay(request.IntervalMs, context.CancellationToken);
            }

            await responseStream.WriteAsync(Reply(request, context, i), context.CancellationToken);
        }

        End(request, context, call);
    }

    public override async Task<EchoReply> ClientStream(IAsyncStreamReader<EchoRequest> requestStream, ServerCallContext context)
    {
        var call = log.Start(context);
        var payload = new MemoryStream();
        var received = 0;
        EchoRequest? last = null;
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            last = requestStream.Current;
            last.Payload.WriteTo(payload);
            received++;
        }

        last ??= new EchoRequest();
        await BeginAsync(last, context);
        var reply = Reply(last, context, index: 0);
        reply.Payload = ByteString.CopyFrom(payload.GetBuffer(), 0, (int)payload.Length);
        reply.Received = received;
        End(last, context, call);
        return reply;
    }

    public override async Task Bidi(IAsyncStreamReader<EchoRequest> requestStream, IServerStreamWriter<EchoReply> responseStream, ServerCallContext context)
    {
        var call = log.Start(context);
        var index = 0;
        EchoRequest? last = null;
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            last = requestStream.Current;
            if (index == 0)
            {
                await BeginAsync(last, context);
            }
            else if (last.DelayMs > 0)
            {
                await Task.Delay(last.DelayMs, context.CancellationToken);
            }

            await responseStream.WriteAsync(Reply(last, context, index++), context.CancellationToken);
            if (last.FailCode != 0)
            {
                break;
            }
        }

        End(last ?? new EchoRequest(), context, call);
    }

    /// <summary>Sends the requested response headers, then waits <c>delay_ms</c> (cancellation noticed and recorded).</summary>
    private static async Task BeginAsync(EchoRequest request, ServerCallContext context)
    {
        if (request.ResponseHeaders.Count > 0)
        {
            var headers = new Metadata();
            foreach (var (key, value) in request.ResponseHeaders)
            {
                headers.Add(key, value);
            }

            await context.WriteResponseHeadersAsync(headers);
        }

        if (request.DelayMs > 0)
        {
            await Task.Delay(request.DelayMs, context.CancellationToken);
        }
    }

    /// <summary>Trailers, then the requested failure (thrown as <see cref="RpcException"/>: the status goes in the trailers).</summary>
    private static void End(EchoRequest request, ServerCallContext context, CallRecord call)
    {
        foreach (var (key, value) in request.ResponseTrailers)
        {
            context.ResponseTrailers.Add(key, value);
        }

        call.Completed.TrySetResult();
        if (request.FailCode != 0 && (request.FailFirst == 0 || call.Starts <= request.FailFirst))
        {
            throw new RpcException(new Status((StatusCode)request.FailCode, request.FailMessage));
        }
    }

    private static EchoReply Reply(EchoRequest request, ServerCallContext context, int index)
    {
        var reply = new EchoReply { Payload = request.Payload, Index = index, Text = request.Text };
        foreach (var entry in context.RequestHeaders)
        {
            if (!entry.IsBinary && entry.Key.StartsWith("x-", StringComparison.Ordinal))
            {
                reply.RequestHeaders[entry.Key] = entry.Value;
            }
        }

        return reply;
    }
}

/// <summary>What the server saw of each call, by the client's <c>x-call-id</c> header.</summary>
internal sealed class CallLog
{
    private readonly ConcurrentDictionary<string, CallRecord> _calls = new(StringComparer.Ordinal);

    /// <summary>The record of call <paramref name="id"/> (made on first use, so a test may wait before the call starts).</summary>
    public CallRecord Get(string id) => _calls.GetOrAdd(id, static _ => new CallRecord());

    public CallRecord Start(ServerCallContext context)
    {
        var id = context.RequestHeaders.GetValue("x-call-id");
        var call = id is null ? new CallRecord() : Get(id);
        // Only a firing before the handler completed is a cancellation (not one while the connection is torn down later).
        context.CancellationToken.Register(static state =>
        {
            var c = (CallRecord)state!;
            if (!c.Completed.Task.IsCompleted)
            {
                c.Cancelled.TrySetResult();
            }
        }, call);
        Interlocked.Increment(ref call.StartCount);
        call.Started.TrySetResult();
        return call;
    }
}

internal sealed class CallRecord
{
    public int StartCount;

    /// <summary>How many calls with this id started (a retried call starts again).</summary>
    public int Starts => Volatile.Read(ref StartCount);

    public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

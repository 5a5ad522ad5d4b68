using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// An HTTP/1.1 upstream on 127.0.0.1:0 that fails on command: each request it reads takes the next action of its script
/// (then <see cref="Default"/> when the script is empty): answer a status (keep-alive, body "name status"), or close
/// the connection without answering (a reset before any response byte), or <c>early503</c> (any status after
/// <c>early</c>): answer as soon as the head is read, before the body, then read the body; <c>grpc14</c> (any gRPC
/// status after <c>grpc</c>): a trailers-only gRPC answer; <see cref="Stall"/> (never answer), <c>slow:MS</c> (answer
/// 200 after MS milliseconds), <see cref="StallBody"/> (send a 200 head and half its body, then nothing), or
/// <see cref="Hold"/> the request unanswered until <see cref="ReleaseHeld"/>. Counts the requests it read and keeps
/// their bodies (Content-Length or chunked).
/// </summary>
internal sealed class ScriptedUpstream : IAsyncDisposable
{
    public const string Close = "close";

    /// <summary>Read the request, never answer (the connection stays open until the proxy closes it).</summary>
    public const string Stall = "stall";

    /// <summary>Answer a 200 head announcing a 10-byte body, send 5 bytes of it, then nothing.</summary>
    public const string StallBody = "stall-body";

    /// <summary>Answer 200 after <paramref name="milliseconds"/>.</summary>
    public static string Slow(int milliseconds) => FormattableString.Invariant($"slow:{milliseconds}");

    /// <summary>Keep the request unanswered until <see cref="ReleaseHeld"/>, then answer 200.</summary>
    public const string Hold = "hold";

    private readonly TcpListener _listener;
    private readonly ConcurrentQueue<string> _script = new();
    private readonly CancellationTokenSource _stop = new();
    private int _disposed;
    private readonly Task _accepting;
    private readonly string _name;
    private int _requests;
    private int _connections;
    private TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _held;
    private readonly List<(int Count, TaskCompletionSource Reached)> _heldWaiters = [];

    public ScriptedUpstream(string name, string defaultAction = "200", params string[] script)
        : this(new IPEndPoint(IPAddress.Loopback, 0), name, defaultAction, script)
    {
    }

    /// <summary>An upstream on <paramref name="bind"/> (e.g. 127.0.0.2 and the port of another one: DNS A records carry no port).</summary>
    public ScriptedUpstream(IPEndPoint bind, string name, string defaultAction = "200", params string[] script)
    {
        _listener = new TcpListener(bind);
        _name = name;
        Default = defaultAction;
        foreach (var action in script)
        {
            _script.Enqueue(action);
        }

        _listener.Start();
        _accepting = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <summary>What a request gets when the script is empty: a status code, or <see cref="Close"/>.</summary>
    public string Default { get; set; }

    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Requests held (<see cref="Hold"/>) and not yet released.</summary>
    public int Held => Volatile.Read(ref _held);

    /// <summary>Completes once <paramref name="count"/> requests are held at the same time.</summary>
    public Task WhenHeldAsync(int count)
    {
        lock (_heldWaiters)
        {
            if (_held >= count)
            {
                return Task.CompletedTask;
            }

            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _heldWaiters.Add((count, reached));
            return reached.Task;
        }
    }

    /// <summary>Answers every request held now (200); later <see cref="Hold"/> actions hold again.</summary>
    public void ReleaseHeld() => Interlocked.Exchange(ref _release, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>The bodies of the requests read to their end, in order (Latin-1).</summary>
    public ConcurrentQueue<string> Bodies { get; } = new();

    /// <summary>The heads of the requests read, in order (Latin-1, without the final empty line).</summary>
    public ConcurrentQueue<string> Heads { get; } = new();

    public void Enqueue(params string[] actions)
    {
        foreach (var action in actions)
        {
            _script.Enqueue(action);
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _connections);
            _ = ServeAsync(socket);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var _ = socket;
        var buffer = new byte[64 * 1024];
        var pending = new StringBuilder();
        try
        {
            while (true)
            {
                int end;
                while ((end = pending.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal)) < 0)
                {
                    var read = await socket.ReceiveAsync(buffer, _stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
                    if (read == 0)
                    {
                        return;
                    }

                    pending.Append(Encoding.Latin1.GetString(buffer, 0, read));
                }

                var head = pending.ToString(0, end);
                Heads.Enqueue(head);
                pending.Remove(0, end + 4);
                var action = _script.TryDequeue(out var next) ? next : Default;
                if (action.StartsWith("early", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref _requests);
                    await SendAsync(socket, action[5..]);
                    if (await ReadBodyAsync(socket, buffer, pending, head) is not { } unread)
                    {
                        return;
                    }

                    Bodies.Enqueue(unread);
                    continue;
                }

                var body = await ReadBodyAsync(socket, buffer, pending, head);
                if (body is null)
                {
                    return;
                }

                Bodies.Enqueue(body);
                Interlocked.Increment(ref _requests);
                if (action == Hold)
                {
                    var release = Volatile.Read(ref _release);
                    lock (_heldWaiters)
                    {
                        _held++;
                        _heldWaiters.RemoveAll(w => w.Count <= _held && w.Reached.TrySetResult());
                    }

                    try
                    {
                        await release.Task.WaitAsync(TimeSpan.FromSeconds(30), _stop.Token);
                    }
                    finally
                    {
                        lock (_heldWaiters)
                        {
                            _held--;
                        }
                    }

                    action = "200";
                }

                if (action == Close)
                {
                    socket.Close(0);
                    return;
                }

                if (action is Stall or StallBody)
                {
                    if (action == StallBody)
                    {
                        await socket.SendAsync(Encoding.Latin1.GetBytes($"HTTP/1.1 200 Scripted\r\nContent-Length: 10\r\nx-upstream: {_name}\r\n\r\nhalf-"), _stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
                    }

                    // Hold the connection until the proxy gives up on it (or the test ends).
                    while (await socket.ReceiveAsync(buffer, _stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(60)) > 0)
                    {
                    }

                    return;
                }

                if (action.StartsWith("slow:", StringComparison.Ordinal))
                {
                    await Task.Delay(int.Parse(action.AsSpan(5), System.Globalization.CultureInfo.InvariantCulture), _stop.Token);
                    action = "200";
                }

                await SendAsync(socket, action);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException or TimeoutException)
        {
        }
    }

    private async Task SendAsync(Socket socket, string status)
    {
        var body = $"{_name} {status}";
        var response = status.StartsWith("grpc", StringComparison.Ordinal)
            ? $"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: {status[4..]}\r\nContent-Length: 0\r\nx-upstream: {_name}\r\n\r\n"
            : $"HTTP/1.1 {status} Scripted\r\nContent-Length: {body.Length}\r\nx-upstream: {_name}\r\n\r\n{body}";
        await socket.SendAsync(Encoding.Latin1.GetBytes(response), _stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Reads the request's body (Content-Length or chunked, trailers skipped) from <paramref name="pending"/> and the socket; null when the connection ended first.</summary>
    private async Task<string?> ReadBodyAsync(Socket socket, byte[] buffer, StringBuilder pending, string head)
    {
        async Task<bool> FillAsync()
        {
            var read = await socket.ReceiveAsync(buffer, _stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            pending.Append(Encoding.Latin1.GetString(buffer, 0, read));
            return read != 0;
        }

        if (!head.Contains("transfer-encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            var length = ContentLength(head);
            while (pending.Length < length)
            {
                if (!await FillAsync())
                {
                    return null;
                }
            }

            var text = pending.ToString(0, length);
            pending.Remove(0, length);
            return text;
        }

        var payload = new StringBuilder();
        while (true)
        {
            int eol;
            while ((eol = pending.ToString().IndexOf("\r\n", StringComparison.Ordinal)) < 0)
            {
                if (!await FillAsync())
                {
                    return null;
                }
            }

            var sizeText = pending.ToString(0, eol).Split(';')[0];
            var size = int.Parse(sizeText, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            pending.Remove(0, eol + 2);
            if (size == 0)
            {
                // Trailers (if any) end with an empty line.
                while (true)
                {
                    while ((eol = pending.ToString().IndexOf("\r\n", StringComparison.Ordinal)) < 0)
                    {
                        if (!await FillAsync())
                        {
                            return null;
                        }
                    }

                    pending.Remove(0, eol + 2);
                    if (eol == 0)
                    {
                        return payload.ToString();
                    }
                }
            }

            while (pending.Length < size + 2)
            {
                if (!await FillAsync())
                {
                    return null;
                }
            }

            payload.Append(pending.ToString(0, size));
            pending.Remove(0, size + 2);
        }
    }

    private static int ContentLength(string head)
    {
        foreach (var line in head.Split("\r\n"))
        {
            if (line.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase))
            {
                return int.Parse(line.AsSpan(15).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    /// <summary>Stops listening and closes every connection (an endpoint that goes away); a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

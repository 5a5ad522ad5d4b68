using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Proxy.Core.Addresses;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>Upper bounds for every await in these tests.</summary>
internal static class Timeouts
{
    public static readonly TimeSpan Short = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan Bulk = TimeSpan.FromSeconds(120);
}

/// <summary>What the forwarder reported for one request (copied out of the ref struct).</summary>
internal sealed record RecordedRequest(
    string Listener, string Service, string? Subset, string Route, bool Routed, string Method, string Authority, string Target,
    string Protocol, int StatusCode, long RequestBytes, long ResponseBytes, TimeSpan Duration, TimeSpan? UpstreamDuration,
    UpstreamAddress? Endpoint, string? Error, bool ProxyMade, int Attempts, bool ReusedConnection, string RequestId = "");

/// <summary>Keeps every record and routed call; lets a test wait for the n-th record.</summary>
internal sealed class RecordingObserver : IHttpRequestObserver
{
    private readonly Lock _lock = new();
    private readonly List<RecordedRequest> _records = [];
    private readonly List<(int Count, TaskCompletionSource Signal)> _waiters = [];
    private int _routed;

    public int RoutedCalls => Volatile.Read(ref _routed);

    public IReadOnlyList<RecordedRequest> Records
    {
        get
        {
            lock (_lock)
            {
                return [.. _records];
            }
        }
    }

    public void OnRequestRouted(string listener, string service, string route) => Interlocked.Increment(ref _routed);

    public void OnRequestCompleted(in HttpRequestRecord record)
    {
        var copy = new RecordedRequest(record.Listener, record.Service, record.Subset, record.Route, record.Routed,
            Encoding.Latin1.GetString(record.Method), Encoding.Latin1.GetString(record.Authority), Encoding.Latin1.GetString(record.Target),
            Encoding.Latin1.GetString(record.Protocol), record.StatusCode, record.RequestBytes, record.ResponseBytes, record.Duration,
            record.UpstreamDuration, record.Endpoint, record.Error, record.ProxyMade, record.Attempts, record.ReusedConnection,
            Encoding.Latin1.GetString(record.RequestId));
        lock (_lock)
        {
            _records.Add(copy);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_records.Count >= _waiters[i].Count)
                {
                    _waiters[i].Signal.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> records exist and returns them.</summary>
    public async Task<IReadOnlyList<RecordedRequest>> WaitForAsync(int count)
    {
        TaskCompletionSource? signal = null;
        lock (_lock)
        {
            if (_records.Count < count)
            {
                signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add((count, signal));
            }
        }

        if (signal is not null)
        {
            await signal.Task.WaitAsync(Timeouts.Short);
        }

        return Records;
    }
}

/// <summary>
/// A minimal keep-alive pool for tests (the real UpstreamPool lives in Proxy.Core): idle connections per
/// address, discarded when the upstream closed them or they hold stray bytes; counts connects.
/// </summary>
internal sealed class TestUpstreamPool : IUpstreamPool, IDisposable
{
    private readonly UpstreamConnector _connector = new(new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) }, NullLoggerFactory.Instance);
    private readonly ConcurrentDictionary<UpstreamAddress, ConcurrentStack<PooledConnection>> _idle = new();
    private int _connects;
    private int _reusableReturns;
    private int _discards;

    public int Connects => Volatile.Read(ref _connects);

    public int ReusableReturns => Volatile.Read(ref _reusableReturns);

    public int Discards => Volatile.Read(ref _discards);

    public async ValueTask<PoolRentResult> RentAsync(UpstreamAddress address, CancellationToken cancellationToken)
    {
        var stack = _idle.GetOrAdd(address, static _ => new ConcurrentStack<PooledConnection>());
        while (stack.TryPop(out var idle))
        {
            var input = idle.Connection.Transport.Input;
            if (input.TryRead(out var result))
            {
                var dead = result.IsCompleted || !result.Buffer.IsEmpty;
                input.AdvanceTo(result.Buffer.Start);
                if (dead)
                {
                    await DiscardAsync(idle);
                    continue;
                }
            }

            idle.IsReused = true;
            return PoolRentResult.Success(idle);
        }

        var connected = await _connector.TryConnectAsync(address, cancellationToken);
        if (!connected.IsSuccess)
        {
            return PoolRentResult.Failed(connected.Failure);
        }

        Interlocked.Increment(ref _connects);
        return PoolRentResult.Success(new PooledConnection(address, connected.Connection!));
    }

    public void Return(PooledConnection connection, bool reusable)
    {
        if (reusable)
        {
            Interlocked.Increment(ref _reusableReturns);
            connection.UseCount++;
            connection.IsReused = false;
            _idle.GetOrAdd(connection.Address, static _ => new ConcurrentStack<PooledConnection>()).Push(connection);
            return;
        }

        _ = DiscardAsync(connection);
    }

    private async Task DiscardAsync(PooledConnection connection)
    {
        Interlocked.Increment(ref _discards);
        connection.Connection.Abort();
        await connection.Connection.DisposeAsync();
    }

    public void Dispose()
    {
        foreach (var stack in _idle.Values)
        {
            while (stack.TryPop(out var c))
            {
                c.Connection.Abort();
                _ = c.Connection.DisposeAsync().AsTask();
            }
        }

        _connector.Dispose();
    }
}

/// <summary>The forwarder behind Kestrel on 127.0.0.1:0 with our socket transport, as the sidecar composes it.</summary>
internal sealed class ForwarderHarness : IAsyncDisposable
{
    private readonly KestrelServer _server;
    private readonly SocketTransportFactory _transport;

    private readonly TestUpstreamPool? _testPool;

    private ForwarderHarness(KestrelServer server, SocketTransportFactory transport, IPEndPoint endPoint, Http1Forwarder forwarder, RecordingObserver observer, TestUpstreamPool? pool)
    {
        _server = server;
        _transport = transport;
        EndPoint = endPoint;
        Forwarder = forwarder;
        Observer = observer;
        _testPool = pool;
    }

    public IPEndPoint EndPoint { get; }

    public Uri BaseUri => new($"http://{EndPoint}");

    public Http1Forwarder Forwarder { get; }

    public RecordingObserver Observer { get; }

    /// <summary>The test pool (not available when the harness was started over another pool).</summary>
    public TestUpstreamPool Pool => _testPool ?? throw new InvalidOperationException("This harness forwards over a caller-owned pool.");

    /// <summary>
    /// Starts the forwarder. With <paramref name="pool"/> it forwards over that (caller-owned) pool instead of a
    /// <see cref="TestUpstreamPool"/>; with <paramref name="record"/> false the options' observer is kept
    /// (<see cref="Observer"/> then sees nothing), e.g. for allocation measurements.
    /// </summary>
    /// <para>With <paramref name="http2"/> the listener serves HTTP/2 with prior knowledge (h2c) through <see cref="Http2Server"/>;
    /// <paramref name="http2Pool"/> is the forwarder's HTTP/2 upstream pool.</para>
    public static async Task<ForwarderHarness> StartAsync(Http1Routing routing, Http1ForwarderOptions? options = null, string listener = "test", IUpstreamPool? pool = null, bool record = true, bool http2 = false, Http2ServerOptions? http2Options = null, IUpstreamPool? http2Pool = null)
    {
        var observer = new RecordingObserver();
        var testPool = pool is null ? new TestUpstreamPool() : null;
        options ??= new Http1ForwarderOptions();
        var forwarder = new Http1Forwarder(listener, pool ?? testPool!, record ? options with { Observer = observer } : options, http2Pool);
        var kestrelOptions = new KestrelServerOptions();
        ListenOptions? listen = null;
        kestrelOptions.Listen(new IPEndPoint(IPAddress.Loopback, 0), lo =>
        {
            listen = lo;
            if (http2)
            {
                var h2 = new Http2Server(forwarder, http2Options);
                lo.Use(_ => ctx => h2.HandleAsync(ctx, routing, ctx.ConnectionClosed));
            }
            else
            {
                lo.Use(_ => ctx => forwarder.HandleAsync(ctx, routing, ctx.ConnectionClosed));
            }
        });
        var transport = new SocketTransportFactory(null, NullLoggerFactory.Instance);
        var server = new KestrelServer(Options.Create(kestrelOptions), transport, NullLoggerFactory.Instance);
        await server.StartAsync(new UnreachableApplication(), CancellationToken.None).WaitAsync(Timeouts.Short);
        return new ForwarderHarness(server, transport, listen!.IPEndPoint!, forwarder, observer, testPool);
    }

    public HttpClient CreateClient()
    {
        var handler = new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None };
        return new HttpClient(handler) { BaseAddress = BaseUri, Timeout = Timeouts.Bulk };
    }

    /// <summary>An HttpClient that speaks HTTP/2 with prior knowledge (h2c) to the harness, one connection.</summary>
    public HttpClient CreateHttp2Client()
    {
        var handler = new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None, EnableMultipleHttp2Connections = false };
        return new HttpClient(handler)
        {
            BaseAddress = BaseUri,
            Timeout = Timeouts.Bulk,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _server.StopAsync(stop.Token).WaitAsync(Timeouts.Short);
        _server.Dispose();
        _transport.Dispose();
        _testPool?.Dispose();
    }

    private sealed class UnreachableApplication : IHttpApplication<object>
    {
        public object CreateContext(IFeatureCollection contextFeatures) => throw new InvalidOperationException("HTTP must not be reached.");

        public void DisposeContext(object context, Exception? exception)
        {
        }

        public Task ProcessRequestAsync(object context) => throw new InvalidOperationException("HTTP must not be reached.");
    }
}

/// <summary>A real HTTP server (Kestrel with its HTTP stack) on 127.0.0.1:0 as the upstream.</summary>
internal sealed class KestrelUpstream : IAsyncDisposable
{
    private readonly WebApplication _app;

    private KestrelUpstream(WebApplication app, IPEndPoint endPoint)
    {
        _app = app;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public UpstreamAddress Address => new(EndPoint);

    public static async Task<KestrelUpstream> StartAsync(RequestDelegate handler, bool webSockets = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.Listen(IPAddress.Loopback, 0);
            o.Limits.MaxRequestBodySize = null;
        });
        var app = builder.Build();
        if (webSockets)
        {
            app.UseWebSockets();
        }

        app.Run(handler);
        await app.StartAsync().WaitAsync(Timeouts.Short);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var uri = new Uri(address);
        return new KestrelUpstream(app, new IPEndPoint(IPAddress.Loopback, uri.Port));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(Timeouts.Short);
        await _app.DisposeAsync();
    }
}

/// <summary>A raw TCP upstream on 127.0.0.1:0 that runs a script per accepted connection (to misbehave on purpose).</summary>
internal sealed class RawUpstream : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private int _accepted;

    public RawUpstream(Func<Socket, int, Task> onConnection)
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _ = AcceptLoopAsync(onConnection);
    }

    public IPEndPoint EndPoint { get; }

    public UpstreamAddress Address => new(EndPoint);

    public int Accepted => Volatile.Read(ref _accepted);

    private async Task AcceptLoopAsync(Func<Socket, int, Task> onConnection)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            var index = Interlocked.Increment(ref _accepted) - 1;
            _ = Task.Run(async () =>
            {
                try
                {
                    await onConnection(socket, index);
                }
                catch (Exception)
                {
                    // Scripts end abruptly on purpose.
                }
                finally
                {
                    socket.Dispose();
                }
            });
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }

    /// <summary>Closes with RST instead of FIN.</summary>
    public static void Reset(Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
    }
}

/// <summary>A parsed HTTP/1.x response read from a raw socket.</summary>
internal sealed record RawResponse(int Status, string Head, Dictionary<string, string> Headers, byte[] Body)
{
    public string BodyText => Encoding.UTF8.GetString(Body);

    public string? Header(string name) => Headers.TryGetValue(name, out var v) ? v : null;
}

/// <summary>Minimal HTTP/1.1 reading over a raw stream: heads, Content-Length, chunked and close-delimited bodies.</summary>
internal sealed class RawHttpReader(Stream stream)
{
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    /// <summary>Reads one response (to a request with <paramref name="method"/>).</summary>
    public async Task<RawResponse> ReadResponseAsync(string method = "GET")
    {
        var head = await ReadHeadAsync() ?? throw new EndOfStreamException("connection closed before a response head");
        var lines = head.Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                var name = line[..colon];
                var value = line[(colon + 1)..].Trim();
                headers[name] = headers.TryGetValue(name, out var prior) ? prior + ", " + value : value;
            }
        }

        byte[] body;
        if (method == "HEAD" || status is 204 or 304 || (status >= 100 && status < 200))
        {
            body = [];
        }
        else if (headers.TryGetValue("transfer-encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = await ReadChunkedAsync();
        }
        else if (headers.TryGetValue("content-length", out var cl))
        {
            body = await ReadExactlyAsync(int.Parse(cl, System.Globalization.CultureInfo.InvariantCulture));
        }
        else
        {
            body = await ReadToEndAsync();
        }

        return new RawResponse(status, head, headers, body);
    }

    /// <summary>Reads a head (up to and without the empty line); null when the stream ends first with nothing read.</summary>
    public async Task<string?> ReadHeadAsync()
    {
        while (true)
        {
            var span = _buffer.AsSpan(_start, _end - _start);
            var end = span.IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                var head = Encoding.Latin1.GetString(span[..end]);
                _start += end + 4;
                return head;
            }

            if (!await FillAsync())
            {
                return _end == _start ? null : throw new EndOfStreamException("connection closed inside a head");
            }
        }
    }

    /// <summary>Reads raw bytes (buffered first).</summary>
    public async Task<int> ReadRawAsync(Memory<byte> destination)
    {
        if (_end == _start && !await FillAsync())
        {
            return 0;
        }

        var take = Math.Min(destination.Length, _end - _start);
        _buffer.AsMemory(_start, take).CopyTo(destination);
        _start += take;
        return take;
    }

    /// <summary>True when the peer closed (FIN) with nothing more to read; false if bytes arrive.</summary>
    public async Task<bool> IsAtEndAsync() => _end == _start && !await FillAsync();

    private async Task<byte[]> ReadChunkedAsync()
    {
        var body = new MemoryStream();
        while (true)
        {
            var line = await ReadLineAsync();
            var semi = line.IndexOf(';', StringComparison.Ordinal);
            var size = Convert.ToInt32(semi < 0 ? line : line[..semi], 16);
            if (size == 0)
            {
                while ((await ReadLineAsync()).Length != 0)
                {
                }

                return body.ToArray();
            }

            body.Write(await ReadExactlyAsync(size));
            if ((await ReadLineAsync()).Length != 0)
            {
                throw new InvalidDataException("chunk not followed by CRLF");
            }
        }
    }

    private async Task<string> ReadLineAsync()
    {
        while (true)
        {
            var span = _buffer.AsSpan(_start, _end - _start);
            var lf = span.IndexOf("\r\n"u8);
            if (lf >= 0)
            {
                var line = Encoding.Latin1.GetString(span[..lf]);
                _start += lf + 2;
                return line;
            }

            if (!await FillAsync())
            {
                throw new EndOfStreamException("connection closed inside a line");
            }
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int count)
    {
        var result = new byte[count];
        var filled = 0;
        while (filled < count)
        {
            if (_end == _start && !await FillAsync())
            {
                throw new EndOfStreamException($"connection closed after {filled} of {count} body bytes");
            }

            var take = Math.Min(count - filled, _end - _start);
            _buffer.AsSpan(_start, take).CopyTo(result.AsSpan(filled));
            _start += take;
            filled += take;
        }

        return result;
    }

    private async Task<byte[]> ReadToEndAsync()
    {
        var body = new MemoryStream();
        do
        {
            body.Write(_buffer, _start, _end - _start);
            _start = _end;
        }
        while (await FillAsync());
        return body.ToArray();
    }

    private async Task<bool> FillAsync()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            throw new InvalidDataException("test buffer full");
        }

        var n = await stream.ReadAsync(_buffer.AsMemory(_end)).AsTask().WaitAsync(Timeouts.Short);
        _end += n;
        return n > 0;
    }
}

/// <summary>A raw client connection to the proxy.</summary>
internal sealed class RawClient : IDisposable
{
    private RawClient(Socket socket)
    {
        Socket = socket;
        Stream = new NetworkStream(socket, ownsSocket: true);
        Reader = new RawHttpReader(Stream);
    }

    public Socket Socket { get; }

    public NetworkStream Stream { get; }

    public RawHttpReader Reader { get; }

    public static async Task<RawClient> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(Timeouts.Short);
        return new RawClient(socket);
    }

    public Task SendAsync(string text) => Stream.WriteAsync(Encoding.Latin1.GetBytes(text)).AsTask().WaitAsync(Timeouts.Short);

    public void Dispose() => Stream.Dispose();
}

/// <summary>Reads HTTP/1.1 requests on the raw upstream side (heads and Content-Length bodies).</summary>
internal static class RawUpstreamHttp
{
    /// <summary>Reads one request head + CL body from <paramref name="reader"/>'s stream; null at EOF.</summary>
    public static async Task<string?> ReadRequestAsync(RawHttpReader reader)
    {
        var head = await reader.ReadHeadAsync();
        return head;
    }

    public static Task SendAsync(Socket socket, string text) => socket.SendAsync(Encoding.Latin1.GetBytes(text)).WaitAsync(Timeouts.Short);

    /// <summary>A raw upstream that records each request head (as text) and answers each with 200 "ok", keep-alive.</summary>
    public static RawUpstream Recording(System.Collections.Concurrent.ConcurrentQueue<string> heads) => new(async (socket, _) =>
    {
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var reader = new RawHttpReader(stream);
        while (await reader.ReadHeadAsync() is { } head)
        {
            heads.Enqueue(head);
            await SendAsync(socket, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
}

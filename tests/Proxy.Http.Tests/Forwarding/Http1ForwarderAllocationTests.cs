using System.Diagnostics;
using System.Net;
using System.Reflection;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Xunit;
using Xunit.Abstractions;

namespace Proxy.Http.Tests.Forwarding;

/// <summary>Runs alone: the allocation counter is process-wide, so no other test may run meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "Allocation measurements";
}

/// <summary>
/// Allocated bytes per forwarded request over real loopback sockets (Kestrel + our socket transport in front,
/// the real <see cref="UpstreamPool"/> behind, a raw socket upstream), with concurrent keep-alive connections.
/// The client and upstream loops here allocate nothing per request either, so the count is the proxy's.
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class Http1ForwarderAllocationTests(ITestOutputHelper output)
{
    private const int MeasuredRequests = 20_000;
    private const double MaxBytesPerRequest = 64;

    // A Debug build compiles every async state machine as a class, allocated per call even when it completes
    // synchronously: the zero-allocation bound only holds for an optimized (Release) Proxy.Http. Debug gets a
    // bound that still catches a gross regression (measured ~1.9 KB/request in Debug).
    private const double MaxBytesPerRequestDebug = 3072;

    private static readonly bool Optimized =
        typeof(Http1Forwarder).Assembly.GetCustomAttribute<DebuggableAttribute>() is not { IsJITOptimizerDisabled: true };

    private static readonly byte[] Get = "GET /alloc HTTP/1.1\r\nHost: alloc.test\r\nUser-Agent: t\r\n\r\n"u8.ToArray();
    private static readonly byte[] Post = "POST /alloc HTTP/1.1\r\nHost: alloc.test\r\nContent-Length: 5\r\n\r\nhello"u8.ToArray();
    private static readonly byte[] Response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"u8.ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(32)]
    [InlineData(32, true)]
    [InlineData(32, false, true)]
    public async Task HandleAsync_KeepAliveGetAndPost_AllocatesAlmostNothingPerRequest(int connections, bool serviceWithOutlierDetection = false, bool routeWithRewrite = false)
    {
        using var upstream = new LoopbackUpstream();
        await using var pool = new UpstreamPool(new UpstreamConnector(loggerFactory: NullLoggerFactory.Instance), new UpstreamPoolOptions(), loggerFactory: NullLoggerFactory.Instance);

        // Through a balanced service with outlier detection: picks, availability checks and result reporting included.
        // Or through a route that rewrites the path's prefix and the host (a rewritten target per request).
        var routes = Proxy.Core.Configuration.RouteConfigReader.ReadJson("""
            [{ "match": { "path": { "segmentPrefix": "/alloc" } }, "action": { "service": "alloc", "rewrite": { "pathPrefix": "/v2/alloc", "host": "backend.internal" } } }]
            """);
        var routing = routeWithRewrite
            ? Http1Routing.ForRoutes(new Proxy.Http.Routing.RouteTable(routes.Routes!), new Proxy.Core.Discovery.ServiceRegistry([new Proxy.Core.Configuration.ServiceConfig("alloc", [], [upstream.Address.EndPoint])]).FindByName)
            : serviceWithOutlierDetection
            ? Http1Routing.ForService(new Proxy.Core.Discovery.ServiceRegistry([new Proxy.Core.Configuration.ServiceConfig("alloc", [], [upstream.Address.EndPoint])
            {
                OutlierDetection = new Proxy.Core.Configuration.OutlierDetectionConfig(),
            }]).FindByName("alloc")!)
            : Http1Routing.ForAddress(upstream.Address);
        await using var harness = await ForwarderHarness.StartAsync(routing, pool: pool, record: false);
        var clients = new Socket[connections];
        try
        {
            for (var i = 0; i < connections; i++)
            {
                clients[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await clients[i].ConnectAsync(harness.EndPoint).WaitAsync(Timeouts.Short);
            }

            var perClient = MeasuredRequests / connections;
            // Warm-up: JIT, tiering, pooled builders' caches, the upstream pool's connections.
            await RunAsync(clients, 500).WaitAsync(Timeouts.Bulk);
            await RunAsync(clients, perClient / 2).WaitAsync(Timeouts.Bulk);

            var before = GC.GetTotalAllocatedBytes(precise: true);
            await RunAsync(clients, perClient).WaitAsync(Timeouts.Bulk);
            var after = GC.GetTotalAllocatedBytes(precise: true);

            var requests = perClient * connections;
            var perRequest = (after - before) / (double)requests;
            output.WriteLine($"{connections} connection(s): {after - before} B over {requests} requests = {perRequest:0.0} B/request");
            var limit = Optimized ? MaxBytesPerRequest : MaxBytesPerRequestDebug;
            Assert.True(perRequest < limit,
                $"{perRequest:0.0} B allocated per forwarded request with {connections} keep-alive connection(s) ({after - before} B over {requests} requests); expected < {limit} ({(Optimized ? "optimized" : "Debug")} build)");
            Assert.True(upstream.Requests >= requests, $"the upstream saw {upstream.Requests} requests, expected at least {requests}");
        }
        finally
        {
            foreach (var client in clients)
            {
                client?.Dispose();
            }
        }
    }

    private static Task RunAsync(Socket[] clients, int requestsPerClient)
    {
        var tasks = new Task[clients.Length];
        for (var i = 0; i < clients.Length; i++)
        {
            tasks[i] = ClientLoopAsync(clients[i], requestsPerClient);
        }

        return Task.WhenAll(tasks);
    }

    /// <summary>Alternates GET and a small Content-Length POST on one keep-alive connection, checking each response.</summary>
    private static async Task ClientLoopAsync(Socket socket, int requests)
    {
        var buffer = new byte[4096];
        for (var n = 0; n < requests; n++)
        {
            var request = (n & 1) == 0 ? Get : Post;
            await socket.SendAsync(request.AsMemory(), SocketFlags.None).ConfigureAwait(false);
            var filled = 0;
            int total;
            while (!TryGetMessageLength(buffer.AsSpan(0, filled), out total))
            {
                var read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new InvalidOperationException($"The proxy closed the connection after {n} requests.");
                }

                filled += read;
            }

            while (filled < total)
            {
                var read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new InvalidOperationException($"The proxy closed the connection in a response after {n} requests.");
                }

                filled += read;
            }

            if (filled != total || !buffer.AsSpan(0, 12).SequenceEqual("HTTP/1.1 200"u8) || !buffer.AsSpan(total - 13, 13).SequenceEqual("Hello, world!"u8))
            {
                throw new InvalidOperationException($"Unexpected response to request {n}.");
            }
        }
    }

    /// <summary>Length of the head plus its Content-Length body once the head is complete in <paramref name="data"/>.</summary>
    private static bool TryGetMessageLength(ReadOnlySpan<byte> data, out int total)
    {
        total = 0;
        var end = data.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            return false;
        }

        var head = data[..end];
        var contentLength = 0;
        var at = head.IndexOf("\r\nContent-Length:"u8);
        if (at >= 0)
        {
            var value = head[(at + 17)..];
            var eol = value.IndexOf("\r\n"u8);
            if (eol >= 0)
            {
                value = value[..eol];
            }

            foreach (var b in value)
            {
                if (b is >= (byte)'0' and <= (byte)'9')
                {
                    contentLength = (contentLength * 10) + (b - '0');
                }
            }
        }

        total = end + 4 + contentLength;
        return true;
    }

    /// <summary>A raw keep-alive HTTP/1.1 upstream on 127.0.0.1:0 answering every request with <see cref="Response"/>.</summary>
    private sealed class LoopbackUpstream : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Socket> _accepted = [];
        private int _requests;

        public LoopbackUpstream()
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(128);
            _ = AcceptLoopAsync();
        }

        public UpstreamAddress Address => new((IPEndPoint)_listener.LocalEndPoint!);

        public int Requests => Volatile.Read(ref _requests);

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
            lock (_accepted)
            {
                foreach (var socket in _accepted)
                {
                    socket.Dispose();
                }
            }

            _stop.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
                {
                    return;
                }

                socket.NoDelay = true;
                lock (_accepted)
                {
                    _accepted.Add(socket);
                }

                _ = ServeAsync(socket);
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            var buffer = new byte[8192];
            var filled = 0;
            try
            {
                while (true)
                {
                    var read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None).ConfigureAwait(false);
                    if (read == 0)
                    {
                        return;
                    }

                    filled += read;
                    // Answer every complete request buffered (the proxy does not pipeline, but be exact anyway).
                    while (TryGetMessageLength(buffer.AsSpan(0, filled), out var total) && total <= filled)
                    {
                        Interlocked.Increment(ref _requests);
                        buffer.AsSpan(total, filled - total).CopyTo(buffer);
                        filled -= total;
                        await socket.SendAsync(Response.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The test ended.
            }
        }
    }
}

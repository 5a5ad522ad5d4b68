using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Tests.Grpc.Echo;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// Failures the sidecar makes itself, answered to gRPC callers as a gRPC status in a trailers-only response (HTTP 200,
/// <c>grpc-status</c>, <c>grpc-message</c> saying what happened) per <c>GrpcSemantics.StatusFor</c>: a gRPC client
/// cannot read an HTTP error page.
/// </summary>
public sealed class GrpcProxyFailureTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private async Task<GrpcPathSetup> StartAsync(ProxyConfig config, IPEndPoint originalDestination, string listener)
    {
        var setup = await GrpcPathSetup.StartSidecarAsync(config, originalDestination, listener);
        _disposables.Add(setup);
        return setup;
    }

    private static async Task<RpcException> UnaryFailsAsync(GrpcPathSetup setup, DateTime? deadline = null)
    {
        using var channel = setup.Channel();
        var client = new Echo.Echo.EchoClient(channel);
        using var call = client.UnaryAsync(new EchoRequest(), deadline: deadline);
        return await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Timeout));
    }

    /// <summary>
    /// A unary call made by hand over HTTP/2 (HttpClient, h2c), so nothing but the proxy sets a timer, and the answer
    /// checked to be trailers-only: HTTP 200, <c>application/grpc</c>, the status in the one HEADERS frame (which
    /// HttpClient files under the headers), no body, no trailers. Returns grpc-status, the decoded grpc-message and
    /// the proxy's reason (<c>x-proxy-error</c>).
    /// </summary>
    private static async Task<(int Status, string Message, string? Reason)> RawTrailersOnlyCallAsync(GrpcPathSetup setup, string? grpcTimeout = null)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(setup.Address, "/proxy.tests.echo.Echo/Unary"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            // One empty gRPC message: uncompressed flag, length 0.
            Content = new ByteArrayContent([0, 0, 0, 0, 0]),
        };
        request.Content.Headers.ContentType = new("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        if (grpcTimeout is not null)
        {
            request.Headers.TryAddWithoutValidation("grpc-timeout", grpcTimeout);
        }

        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        var body = await response.Content.ReadAsByteArrayAsync().WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        Assert.Empty(body);
        Assert.Empty(response.TrailingHeaders);
        var status = int.Parse(Assert.Single(response.Headers.GetValues("grpc-status")), System.Globalization.CultureInfo.InvariantCulture);
        var message = Uri.UnescapeDataString(Assert.Single(response.Headers.GetValues("grpc-message")));
        var reason = response.Headers.TryGetValues("x-proxy-error", out var values) ? values.Single() : null;
        return (status, message, reason);
    }

    [Theory]
    [InlineData(UpstreamProtocol.Http2)]
    [InlineData(UpstreamProtocol.Same)]
    [InlineData(UpstreamProtocol.Http1)]
    public async Task Explicit_NoEndpointListening_UnavailableNamingTheEndpoint(UpstreamProtocol protocol)
    {
        var dead = GrpcPathSetup.DeadEndPoint();
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(protocol, dead)],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName)],
        };
        var setup = await StartAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);

        var e = await UnaryFailsAsync(setup);
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Contains(dead.ToString(), e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("refused", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal("upstream_refused", e.Trailers.GetValue("x-proxy-error"));

        var (status, message, reason) = await RawTrailersOnlyCallAsync(setup);
        Assert.Equal((int)StatusCode.Unavailable, status);
        Assert.Contains(dead.ToString(), message, StringComparison.Ordinal);
        Assert.Equal("upstream_refused", reason);
    }

    [Fact]
    public async Task CapturedPassthrough_OriginalDestinationRefuses_Unavailable()
    {
        var dead = GrpcPathSetup.DeadEndPoint();
        var setup = await StartAsync(GrpcPathSetup.BaseConfig(), dead, "outbound");

        var e = await UnaryFailsAsync(setup);
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Contains(dead.ToString(), e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explicit_NoRouteMatches_UnimplementedSayingNoRoute()
    {
        var server = GrpcPathSetup.DeadEndPoint();
        RouteConfig route = new()
        {
            Name = "other-only",
            Match = new RouteMatchConfig { Path = new PathMatchConfig(PathMatchKind.Prefix, "/other.Service/") },
            Action = new RouteActionConfig { Destinations = [new WeightedDestinationConfig(GrpcPathSetup.ServiceName)] },
        };
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(UpstreamProtocol.Http2, server)],
            Listeners = [GrpcPathSetup.Edge("", route)],
        };
        var setup = await StartAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);

        // GrpcSemantics.StatusFor: the proxy's 404 no_route is UNIMPLEMENTED (the HTTP-to-gRPC mapping).
        var e = await UnaryFailsAsync(setup);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
        Assert.Contains("no route", e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("/proxy.tests.echo.Echo/Unary", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal("no_route", e.Trailers.GetValue("x-proxy-error"));

        var (status, _, reason) = await RawTrailersOnlyCallAsync(setup);
        Assert.Equal((int)StatusCode.Unimplemented, status);
        Assert.Equal("no_route", reason);
    }

    [Theory]
    [InlineData(UpstreamProtocol.Http1, false)]
    [InlineData(UpstreamProtocol.Http2, true)]
    [InlineData(UpstreamProtocol.Http2, false)]
    public async Task Explicit_UpstreamNeverAnswers_ProxyAnswersDeadlineExceededAtGrpcTimeout(UpstreamProtocol protocol, bool speaksHttp2)
    {
        // An endpoint that accepts and reads but never answers the call: only the call's deadline ends the wait. The
        // raw request carries grpc-timeout but the client sets no timer of its own, so the answer must be the proxy's.
        // speaksHttp2: the endpoint completes the HTTP/2 handshake (SETTINGS both ways) and then ignores the stream;
        // otherwise it never writes a byte, so for an HTTP/2 upstream even the connection's handshake never ends
        // (the deadline must bound that wait too).
        await using var silent = new SilentServer(speaksHttp2);
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(protocol, silent.EndPoint)],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName)],
        };
        var setup = await StartAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var (grpcStatus, grpcMessage, reason) = await RawTrailersOnlyCallAsync(setup, grpcTimeout: "300m");

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        Assert.Equal((int)StatusCode.DeadlineExceeded, grpcStatus);
        Assert.Contains("grpc-timeout", grpcMessage, StringComparison.Ordinal);
        Assert.Equal("deadline_exceeded", reason);

        // Grpc.Net.Client with a deadline: DEADLINE_EXCEEDED too, whichever of client and proxy is first.
        var e = await UnaryFailsAsync(setup, DateTime.UtcNow.AddMilliseconds(300));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
    }

    /// <summary>
    /// Accepts connections on 127.0.0.1:0 and reads them, never answering a request. With <c>speaksHttp2</c> it plays
    /// the HTTP/2 server's part of the handshake first: its (empty) SETTINGS at once, and the ACK of the client's
    /// SETTINGS once the client preface and that frame have arrived.
    /// </summary>
    private sealed class SilentServer : IAsyncDisposable
    {
        private static readonly byte[] Settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
        private static readonly byte[] SettingsAck = [0, 0, 0, 4, 1, 0, 0, 0, 0];
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Socket> _accepted = [];
        private readonly bool _speaksHttp2;
        private readonly Task _loop;

        public SilentServer(bool speaksHttp2)
        {
            _speaksHttp2 = speaksHttp2;
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen();
            EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
            _loop = AcceptLoopAsync();
        }

        public IPEndPoint EndPoint { get; }

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (true)
                {
                    var socket = await _listener.AcceptAsync(_stop.Token);
                    lock (_accepted)
                    {
                        _accepted.Add(socket);
                    }

                    _ = ServeAsync(socket, _speaksHttp2, _stop.Token);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private static async Task ServeAsync(Socket socket, bool speaksHttp2, CancellationToken stop)
        {
            var buffer = new byte[16384];
            try
            {
                if (speaksHttp2)
                {
                    await socket.SendAsync(Settings, SocketFlags.None, stop);
                }

                // Client preface (24 bytes), then the client's SETTINGS frame: 9-byte header + its payload.
                var received = new List<byte>();
                var acked = !speaksHttp2;
                int n;
                while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, stop)) > 0)
                {
                    if (acked)
                    {
                        continue;
                    }

                    received.AddRange(buffer.AsSpan(0, n));
                    if (received.Count >= 24 + 9 && received.Count >= 24 + 9 + ((received[24] << 16) | (received[25] << 8) | received[26]))
                    {
                        await socket.SendAsync(SettingsAck, SocketFlags.None, stop);
                        acked = true;
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Dispose();
            await _loop.WaitAsync(TimeSpan.FromSeconds(10));
            lock (_accepted)
            {
                foreach (var s in _accepted)
                {
                    s.Dispose();
                }
            }

            _stop.Dispose();
        }
    }
}

using Google.Protobuf;
using Grpc.Core;
using Proxy.Core.Configuration;
using Proxy.Sidecar.Tests.Grpc.Echo;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// gRPC retry conditions through a real sidecar to a real gRPC server (Grpc.AspNetCore), called with Grpc.Net.Client:
/// a call answered UNAVAILABLE (trailers-only) is sent again with its request messages (the kept body), other statuses
/// are not, and a request body over the policy's limit is not kept.
/// </summary>
public sealed class GrpcRetryTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _disposables = [];
    private GrpcTestServer _server = null!;
    private GrpcPathSetup _setup = null!;

    public async Task InitializeAsync()
    {
        _server = await GrpcTestServer.StartAsync();
        _disposables.Add(_server);
        var policy = new RetryPolicyConfig
        {
            MaxRetries = 3,
            On = RetryOn.GrpcUnavailable | RetryOn.GrpcResourceExhausted,
            Backoff = TimeSpan.FromMilliseconds(1),
            MaxBackoff = TimeSpan.FromMilliseconds(5),
            MaxBodyBytes = 16 * 1024,
        };
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(UpstreamProtocol.Same, _server.EndPoint) with { Retries = policy }],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName)],
        };
        _setup = await GrpcPathSetup.StartSidecarAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);
        _disposables.Add(_setup);
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    private static Metadata Id(string id) => new() { { "x-call-id", id } };

    [Fact]
    public async Task Unary_UnavailableTwice_ThenAnswered_TheServerSawTheMessageThreeTimes()
    {
        using var channel = _setup.Channel();
        var client = new Echo.Echo.EchoClient(channel);
        var payload = ByteString.CopyFrom(Enumerable.Range(0, 5000).Select(static i => (byte)i).ToArray());
        var request = new EchoRequest { Payload = payload, FailCode = (int)StatusCode.Unavailable, FailMessage = "warming up", FailFirst = 2 };
        var reply = await client.UnaryAsync(request, Id("unary-1")).ResponseAsync.WaitAsync(Timeout);
        Assert.Equal(payload, reply.Payload);
        Assert.Equal(3, _server.Calls.Get("unary-1").Starts);
    }

    [Fact]
    public async Task ClientStream_ResourceExhaustedOnce_RetriedWithEveryMessage()
    {
        using var channel = _setup.Channel();
        var client = new Echo.Echo.EchoClient(channel);
        using var call = client.ClientStream(Id("stream-1"));
        for (var i = 0; i < 5; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest
            {
                Payload = ByteString.CopyFromUtf8($"part{i};"),
                FailCode = (int)StatusCode.ResourceExhausted,
                FailFirst = 1,
            }).WaitAsync(Timeout);
        }

        await call.RequestStream.CompleteAsync().WaitAsync(Timeout);
        var reply = await call.ResponseAsync.WaitAsync(Timeout);
        Assert.Equal(5, reply.Received);
        Assert.Equal("part0;part1;part2;part3;part4;", reply.Payload.ToStringUtf8());
        Assert.Equal(2, _server.Calls.Get("stream-1").Starts);
    }

    [Fact]
    public async Task StatusNotListed_NotRetried()
    {
        using var channel = _setup.Channel();
        var client = new Echo.Echo.EchoClient(channel);
        var request = new EchoRequest { FailCode = (int)StatusCode.InvalidArgument, FailMessage = "bad field", FailFirst = 1 };
        var e = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(request, Id("invalid-1")).ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(1, _server.Calls.Get("invalid-1").Starts);
    }

    [Fact]
    public async Task BodyOverTheLimit_NotRetried_TheClientSeesTheServersStatus()
    {
        using var channel = _setup.Channel();
        var client = new Echo.Echo.EchoClient(channel);
        var request = new EchoRequest { Payload = ByteString.CopyFrom(new byte[20_000]), FailCode = (int)StatusCode.Unavailable, FailMessage = "busy", FailFirst = 1 };
        var e = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(request, Id("big-1")).ResponseAsync.WaitAsync(Timeout));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Equal("busy", e.Status.Detail);
        Assert.Equal(1, _server.Calls.Get("big-1").Starts);
    }
}

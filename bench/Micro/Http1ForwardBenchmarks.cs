using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;

namespace Proxy.Bench.Micro;

/// <summary>
/// One HTTP/1.1 request forwarded by <see cref="Http1Forwarder"/> on a keep-alive connection, over in-memory pipes
/// with inline schedulers (no sockets): the client writes the request, the forwarder parses, routes and writes it
/// upstream; the benchmark plays the upstream (reads the request, writes a 13-byte response) and reads what reaches
/// the client. Everything runs synchronously on the benchmark thread. Expected: 0 B allocated per request.
/// <c>POST+retries</c> routes to a service with a retry policy, so the request (head and body) is also kept for a
/// possible retry (RequestReplayBuffer, pooled memory): still 0 B.
/// </summary>
[MemoryDiagnoser]
public class Http1ForwardBenchmarks
{
    private static readonly byte[] GetRequest = "GET /plaintext HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"u8.ToArray();
    private static readonly byte[] PostRequest = "POST /submit HTTP/1.1\r\nHost: bench.example\r\nContent-Length: 5\r\n\r\nhello"u8.ToArray();
    private static readonly byte[] Response = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nServer: bench\r\n\r\nHello, World!"u8.ToArray();

    private IDuplexPipe _client = null!;
    private IDuplexPipe _upstream = null!;
    private Task _forwarding = null!;
    private byte[] _request = null!;

    [Params("GET", "POST", "POST+retries")]
    public string Request { get; set; } = "GET";

    [GlobalSetup]
    public void Setup()
    {
        _request = Request.StartsWith("POST", StringComparison.Ordinal) ? PostRequest : GetRequest;
        var address = new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9));
        var (clientSide, client) = InMemoryForwarding.CreatePair("client");
        var (upstreamSide, upstream) = InMemoryForwarding.CreatePair("upstream");
        _client = client;
        _upstream = upstream;
        var forwarder = new Http1Forwarder("bench", new SingleConnectionPool(new PooledConnection(address, upstreamSide)));
        var routing = Http1Routing.ForAddress(address);
        if (Request == "POST+retries")
        {
            var registry = new ServiceRegistry([new ServiceConfig("bench", [], [address.EndPoint]) { Retries = new RetryPolicyConfig { NonIdempotent = true } }]);
            routing = Http1Routing.ForService(registry.FindByName("bench")!);
        }

        _forwarding = forwarder.HandleAsync(clientSide, routing);
        Forward();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Output.Complete();
        _upstream.Output.Complete();
        _forwarding.Wait(TimeSpan.FromSeconds(10));
    }

    [Benchmark]
    public long Forward()
    {
        // Client -> proxy: the forwarder runs inline up to waiting for the upstream's response.
        _client.Output.Write(_request);
        InMemoryForwarding.Complete(_client.Output.FlushAsync());
        // Upstream -> proxy -> client; the proxy runs inline up to waiting for the client's next request.
        return InMemoryForwarding.Relay(_upstream, _client, Response);
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Proxy.Tls.ClientHello;
using Proxy.Tls.Passthrough;
using Proxy.Tls.Tests.ClientHello;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Passthrough;

/// <summary>The ClientHello peek over real loopback sockets: nothing is consumed, and partial hellos are waited for.</summary>
public sealed class ClientHelloPeekerTests
{
    private static long Deadline(TimeSpan after) => Environment.TickCount64 + (long)after.TotalMilliseconds;

    private static async Task<(Socket Client, Socket Server)> PairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(TestTimeouts.Short);
        var server = await listener.AcceptAsync().WaitAsync(TestTimeouts.Short);
        return (client, server);
    }

    [Fact]
    public async Task PeekAsync_LiveSslStreamClient_ParsesSniAndAlpnAndConsumesNothing()
    {
        // A ClientHello captured at test time from this machine's SslStream (the committed vectors may age).
        var (client, server) = await PairAsync();
        using var clientLease = client;
        using var serverLease = server;
        using var ssl = new SslStream(new NetworkStream(client, ownsSocket: false));
        var handshake = ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "Live.Example.org",
            ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        });

        var result = await new ClientHelloPeeker().PeekAsync(server, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(ClientHelloPeekOutcome.Parsed, result.Outcome);
        Assert.Equal("live.example.org", result.ServerName);
        Assert.True((result.Flags & ClientHelloFlags.OffersH2) != 0);
        Assert.True((result.Flags & ClientHelloFlags.OffersHttp11) != 0);
        Assert.Equal(0x0304, result.MaxVersion);

        // Still queued: a read returns the same hello from its first byte.
        var buffer = new byte[result.BytesPeeked];
        var read = 0;
        while (read < buffer.Length)
        {
            read += await server.ReceiveAsync(buffer.AsMemory(read)).AsTask().WaitAsync(TestTimeouts.Short);
        }

        Assert.Equal(ClientHelloStatus.Parsed, ClientHelloParser.TryParse(buffer, new byte[ClientHelloParser.MaxMessageLength], out _).Status);
        server.Close();
        await Assert.ThrowsAnyAsync<Exception>(() => handshake.WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public async Task PeekAsync_HelloDribbledInPieces_WaitsForAllOfIt()
    {
        var wire = ClientHelloVectors.Fragment(ClientHelloVectors.Message(ClientHelloVectors.Load("curl-http2")), 200);
        var (client, server) = await PairAsync();
        using var clientLease = client;
        using var serverLease = server;
        var peek = new ClientHelloPeeker().PeekAsync(server, Deadline(TestTimeouts.Short)).AsTask();
        foreach (var size in new[] { 3, 4, 10, 250, 100 })
        {
            Assert.False(peek.IsCompleted);
            await client.SendAsync(wire.AsMemory(0, size)).AsTask().WaitAsync(TestTimeouts.Short);
            wire = wire[size..];
            await Task.Delay(20);
        }

        await client.SendAsync(wire).WaitAsync(TestTimeouts.Short);
        var result = await peek.WaitAsync(TestTimeouts.Short);
        Assert.Equal(ClientHelloPeekOutcome.Parsed, result.Outcome);
        Assert.Equal("curl.example.com", result.ServerName);
    }

    [Fact]
    public async Task PeekAsync_IncompleteAtDeadline_TimedOut()
    {
        var wire = ClientHelloVectors.Load("openssl-h2-http11");
        var (client, server) = await PairAsync();
        using var clientLease = client;
        using var serverLease = server;
        await client.SendAsync(wire.AsMemory(0, 100)).AsTask().WaitAsync(TestTimeouts.Short);
        var result = await new ClientHelloPeeker().PeekAsync(server, Deadline(TimeSpan.FromMilliseconds(200))).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(ClientHelloPeekOutcome.TimedOut, result.Outcome);
        Assert.Equal(100, result.BytesPeeked);
    }

    [Fact]
    public async Task PeekAsync_ClientClosesMidHello_ClientClosed()
    {
        var wire = ClientHelloVectors.Load("openssl-h2-http11");
        var (client, server) = await PairAsync();
        using var serverLease = server;
        var peek = new ClientHelloPeeker().PeekAsync(server, Deadline(TestTimeouts.Short)).AsTask();
        await client.SendAsync(wire.AsMemory(0, 100)).AsTask().WaitAsync(TestTimeouts.Short);
        client.Shutdown(SocketShutdown.Send);
        var result = await peek.WaitAsync(TestTimeouts.Short);
        Assert.Equal(ClientHelloPeekOutcome.ClientClosed, result.Outcome);
        client.Dispose();
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n\r\n", ClientHelloPeekOutcome.NotTls)]
    [InlineData("\u0016\u0003\u0001\u0000\u0004\u0002\u0000\u0000\u0000", ClientHelloPeekOutcome.NotTls)]
    public async Task PeekAsync_NotAClientHello_NotTls(string text, ClientHelloPeekOutcome expected)
    {
        var (client, server) = await PairAsync();
        using var clientLease = client;
        using var serverLease = server;
        await client.SendAsync(System.Text.Encoding.Latin1.GetBytes(text)).WaitAsync(TestTimeouts.Short);
        var result = await new ClientHelloPeeker().PeekAsync(server, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(expected, result.Outcome);
    }

    [Fact]
    public async Task PeekAsync_Malformed_InvalidWithReason()
    {
        var wire = ClientHelloVectors.Load("curl-http2");
        wire[9 + 34] = 33; // session id longer than 32
        var (client, server) = await PairAsync();
        using var clientLease = client;
        using var serverLease = server;
        await client.SendAsync(wire).WaitAsync(TestTimeouts.Short);
        var result = await new ClientHelloPeeker().PeekAsync(server, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(ClientHelloPeekOutcome.Invalid, result.Outcome);
        Assert.Equal("bad_session_id_length", result.Describe());
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Proxy.Tls.ClientHello;
using Proxy.Tls.Mesh;
using Proxy.Tls.Passthrough;
using Proxy.Tls.Tests.ClientHello;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Mesh;

public sealed class MeshAlpnTests
{
    [Theory]
    [InlineData("proxy-mesh/h2", MeshInnerProtocol.Http2)]
    [InlineData("proxy-mesh/http1.1", MeshInnerProtocol.Http1)]
    [InlineData("proxy-mesh/tcp", MeshInnerProtocol.Tcp)]
    [InlineData("h2", MeshInnerProtocol.None)]
    [InlineData("http/1.1", MeshInnerProtocol.None)]
    [InlineData("proxy-mesh/h3", MeshInnerProtocol.None)]
    [InlineData("proxy-mesh/h2x", MeshInnerProtocol.None)]
    public void Classify_ExactNamesOnly(string name, MeshInnerProtocol expected)
        => Assert.Equal(expected, MeshAlpn.Classify(System.Text.Encoding.ASCII.GetBytes(name)));

    [Theory]
    [InlineData(MeshInnerProtocol.Http2)]
    [InlineData(MeshInnerProtocol.Http1)]
    [InlineData(MeshInnerProtocol.Tcp)]
    public void For_ClassifiesBack(MeshInnerProtocol inner)
        => Assert.Equal(inner, MeshAlpn.Classify(MeshAlpn.For(inner).Protocol.Span));

    [Fact]
    public void Offered_FirstMeshProtocolInTheList()
    {
        var wire = TestHelloBuilder.Wire(TestHelloBuilder.Alpn("h2", "proxy-mesh/tcp", "proxy-mesh/h2"));
        Assert.Equal(ClientHelloStatus.Parsed, ClientHelloParser.TryParse(wire, new byte[ClientHelloParser.MaxMessageLength], out var hello).Status);
        Assert.Equal(MeshInnerProtocol.Tcp, MeshAlpn.Offered(hello.AlpnProtocols));
    }

    [Fact]
    public void Offered_NoMeshProtocol_None()
    {
        var wire = TestHelloBuilder.Wire(TestHelloBuilder.Alpn("h2", "http/1.1"));
        Assert.Equal(ClientHelloStatus.Parsed, ClientHelloParser.TryParse(wire, new byte[ClientHelloParser.MaxMessageLength], out var hello).Status);
        Assert.Equal(MeshInnerProtocol.None, MeshAlpn.Offered(hello.AlpnProtocols));
    }

    [Theory]
    [InlineData("proxy-mesh/h2", MeshInnerProtocol.Http2)]
    [InlineData("h2", MeshInnerProtocol.None)]
    public async Task Peek_LiveSslStreamClient_ReportsTheMeshProtocol(string alpn, MeshInnerProtocol expected)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(TestTimeouts.Short);
        using var server = await listener.AcceptAsync().WaitAsync(TestTimeouts.Short);
        using var ssl = new SslStream(new NetworkStream(client, ownsSocket: false));
        _ = ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "mesh", ApplicationProtocols = [new SslApplicationProtocol(alpn)] });

        var result = await new ClientHelloPeeker().PeekAsync(server, Environment.TickCount64 + (long)TestTimeouts.Short.TotalMilliseconds).AsTask().WaitAsync(TestTimeouts.Short);

        Assert.Equal(ClientHelloPeekOutcome.Parsed, result.Outcome);
        Assert.Equal(expected, result.MeshProtocol);
        server.Close();
    }
}

// One-off generator of the ClientHello test vectors in this folder (not part of the test project).
// Run from this folder:  dotnet run capture.cs
// Each client (SslStream, curl, openssl s_client) connects to a listener on 127.0.0.1:0; the listener records the
// TLS records that hold the client's first handshake message and writes them as <name>.hex, then drops the connection.
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

var outDir = args.Length > 0 ? args[0] : ".";

await CaptureAsync("sslstream-tls13-h2-http11", port => SslStreamClientAsync(port, "backend-a.example.com", SslProtocols.Tls13));
await CaptureAsync("sslstream-tls12-h2-http11", port => SslStreamClientAsync(port, "backend-b.example.com", SslProtocols.Tls12));
await CaptureAsync("curl-http2", port => RunAsync("curl", $"--http2 -sk --max-time 5 --resolve curl.example.com:{port}:127.0.0.1 https://curl.example.com:{port}/"));
await CaptureAsync("curl-http11", port => RunAsync("curl", $"--http1.1 -sk --max-time 5 --resolve curl.example.com:{port}:127.0.0.1 https://curl.example.com:{port}/"));
await CaptureAsync("curl-http11-tls12", port => RunAsync("curl", $"--http1.1 --tls-max 1.2 -sk --max-time 5 --resolve Mixed.Case.Example.com:{port}:127.0.0.1 https://Mixed.Case.Example.com:{port}/"));
await CaptureAsync("openssl-h2-http11", port => RunAsync("openssl", $"s_client -connect 127.0.0.1:{port} -servername openssl.example.com -alpn h2,http/1.1"));
await CaptureAsync("openssl-no-sni", port => RunAsync("openssl", $"s_client -connect 127.0.0.1:{port} -noservername"));
return 0;

async Task CaptureAsync(string name, Func<int, Task> client)
{
    using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
    listener.Listen(1);
    var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
    var clientTask = client(port);
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
    using var socket = await listener.AcceptAsync(cts.Token);
    var bytes = await ReadFirstHandshakeMessageAsync(socket, cts.Token);
    socket.Close();
    try
    {
        await clientTask.WaitAsync(TimeSpan.FromSeconds(10));
    }
    catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException)
    {
        // The client fails once the listener hangs up: expected.
    }

    File.WriteAllText(Path.Combine(outDir, name + ".hex"), Convert.ToHexStringLower(bytes) + "\n");
    Console.WriteLine($"{name}: {bytes.Length} bytes");
}

// Reads whole records until the first handshake message (4-byte header + length) is complete.
static async Task<byte[]> ReadFirstHandshakeMessageAsync(Socket socket, CancellationToken ct)
{
    var data = new List<byte>();
    var buffer = new byte[4096];
    var fragments = new List<byte>();
    var pos = 0;
    while (true)
    {
        while (data.Count - pos >= 5 && data.Count - pos - 5 >= ((data[pos + 3] << 8) | data[pos + 4]))
        {
            var length = (data[pos + 3] << 8) | data[pos + 4];
            fragments.AddRange(data.GetRange(pos + 5, length));
            pos += 5 + length;
            if (fragments.Count >= 4 && fragments.Count >= 4 + ((fragments[1] << 16) | (fragments[2] << 8) | fragments[3]))
            {
                return data.GetRange(0, pos).ToArray();
            }
        }

        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
        if (n == 0)
        {
            throw new IOException("the client closed before its ClientHello was complete");
        }

        data.AddRange(buffer.AsSpan(0, n));
    }
}

static async Task SslStreamClientAsync(int port, string host, SslProtocols protocols)
{
    using var tcp = new TcpClient();
    await tcp.ConnectAsync(IPAddress.Loopback, port);
    using var ssl = new SslStream(tcp.GetStream());
    await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
    {
        TargetHost = host,
        EnabledSslProtocols = protocols,
        ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
    });
}

static async Task RunAsync(string file, string arguments)
{
    using var process = Process.Start(new ProcessStartInfo(file, arguments)
    {
        RedirectStandardInput = true,
        RedirectStandardOutput = true,
        RedirectStandardError = true,
    })!;
    process.StandardInput.Close();
    _ = process.StandardOutput.ReadToEndAsync();
    _ = process.StandardError.ReadToEndAsync();
    await process.WaitForExitAsync();
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.Tests.Lifecycle;

/// <summary>
/// An HTTP/1.1 upstream on 127.0.0.1:0 (Kestrel's HTTP stack) whose <c>/work?ms=N</c> answers after N ms with the body
/// <c>done N</c>, so requests are still in flight when a drain begins.
/// </summary>
internal sealed class SlowUpstream : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SlowUpstream(WebApplication app, IPEndPoint endPoint)
    {
        _app = app;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<SlowUpstream> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.Run(async context =>
        {
            var ms = int.TryParse(context.Request.Query["ms"], NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : 0;
            if (ms > 0)
            {
                await Task.Delay(ms, context.RequestAborted);
            }

            var body = System.Text.Encoding.ASCII.GetBytes($"done {ms}");
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
        });
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SlowUpstream(app, new IPEndPoint(IPAddress.Loopback, new Uri(address).Port));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await _app.DisposeAsync();
    }
}

/// <summary>A TCP echo server on 127.0.0.1:0: every connection gets back what it sends, until it closes.</summary>
internal sealed class EchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public EchoServer()
    {
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                _ = EchoAsync(client);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task EchoAsync(TcpClient client)
    {
        using (client)
        {
            var buffer = new byte[4096];
            var stream = client.GetStream();
            try
            {
                int read;
                while ((read = await stream.ReadAsync(buffer, _stop.Token)) > 0)
                {
                    await stream.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

/// <summary>
/// A keep-alive HTTP/1.1 client on one raw socket, so a test sees exactly what happens on its connection: the
/// response's <c>Connection</c> field, and whether the proxy then closes cleanly (FIN) or resets.
/// </summary>
internal sealed class RawHttp1Client : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    private RawHttp1Client(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
    }

    public static async Task<RawHttp1Client> ConnectAsync(EndPoint proxy)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(proxy).WaitAsync(TimeSpan.FromSeconds(10));
        return new RawHttp1Client(socket);
    }

    /// <summary>One request and its response; throws when the connection ends before a whole response.</summary>
    public async Task<(int Status, bool Close, string Body)> GetAsync(string target, TimeSpan timeout)
    {
        await _stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n")).AsTask().WaitAsync(timeout);
        int headEnd;
        while ((headEnd = IndexOfHeadEnd()) < 0)
        {
            await FillAsync(timeout);
        }

        var head = Encoding.ASCII.GetString(_buffer, _start, headEnd - _start);
        _start = headEnd + 4;
        var lines = head.Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], CultureInfo.InvariantCulture);
        var length = 0;
        var close = false;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals("content-length", StringComparison.OrdinalIgnoreCase))
            {
                length = int.Parse(value, CultureInfo.InvariantCulture);
            }
            else if (name.Equals("connection", StringComparison.OrdinalIgnoreCase) && value.Equals("close", StringComparison.OrdinalIgnoreCase))
            {
                close = true;
            }
            else if (name.Equals("transfer-encoding", StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidOperationException("the test upstream answers with content-length");
            }
        }

        while (_end - _start < length)
        {
            await FillAsync(timeout);
        }

        var body = Encoding.ASCII.GetString(_buffer, _start, length);
        _start += length;
        return (status, close, body);
    }

    /// <summary>Waits for the end of the connection: true for a clean close (FIN, no more bytes), false for a reset.</summary>
    public async Task<bool> ClosedCleanlyAsync(TimeSpan timeout)
    {
        try
        {
            var read = await _stream.ReadAsync(_buffer.AsMemory(0, 1)).AsTask().WaitAsync(timeout);
            return read == 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private int IndexOfHeadEnd() => _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8) is var i and >= 0 ? _start + i : -1;

    private async Task FillAsync(TimeSpan timeout)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        var read = await _stream.ReadAsync(_buffer.AsMemory(_end)).AsTask().WaitAsync(timeout);
        if (read == 0)
        {
            throw new IOException("the proxy closed the connection before a whole response");
        }

        _end += read;
    }

    public void Dispose()
    {
        _stream.Dispose();
        _socket.Dispose();
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace Proxy.Tls.Tests.TestSupport;

/// <summary>
/// A loopback TLS server on port 0 (SslStream over a NetworkStream) that accepts connections and runs a handler on
/// each, or, when <paramref name="silent"/>, accepts and never says a word (a handshake that never ends).
/// </summary>
public sealed class TlsTestServer : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _accepted = [];
    private readonly Task _loop;

    public TlsTestServer(X509Certificate2? certificate, Func<SslStream, Task>? handler = null, bool silent = false,
        bool requireClientCertificate = false, List<SslApplicationProtocol>? alpn = null)
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                lock (_accepted)
                {
                    _accepted.Add(socket);
                }

                if (silent)
                {
                    continue;
                }

                _ = Task.Run(async () =>
                {
                    using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true));
                    try
                    {
                        await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                        {
                            ServerCertificate = certificate,
                            ClientCertificateRequired = requireClientCertificate,
                            RemoteCertificateValidationCallback = (_, c, _, _) => !requireClientCertificate || c is not null,
                            ApplicationProtocols = alpn,
                        }, _stop.Token);
                        Handshakes++;
                        LastClientCertificate = ssl.RemoteCertificate is { } rc ? new X509Certificate2(rc) : null;
                        LastAlpn = ssl.NegotiatedApplicationProtocol;
                        LastServerName = ssl.TargetHostName;
                        if (handler is not null)
                        {
                            await handler(ssl);
                        }
                    }
                    catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException or ObjectDisposedException)
                    {
                        Failures++;
                    }
                });
            }
        });
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    public int Handshakes { get; private set; }

    public int Failures { get; private set; }

    public X509Certificate2? LastClientCertificate { get; private set; }

    public SslApplicationProtocol LastAlpn { get; private set; }

    public string? LastServerName { get; private set; }

    /// <summary>Echoes what it reads until the client closes.</summary>
    public static async Task Echo(SslStream ssl)
    {
        var buffer = new byte[4096];
        int n;
        while ((n = await ssl.ReadAsync(buffer)) > 0)
        {
            await ssl.WriteAsync(buffer.AsMemory(0, n));
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_accepted)
        {
            foreach (var s in _accepted)
            {
                s.Dispose();
            }
        }

        await _loop.WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

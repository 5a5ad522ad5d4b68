using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Proxy.Core.Transport;

/// <summary>
/// Kestrel transport built on our <see cref="SocketConnection"/>: half-close, lazy start (so a stage
/// can take the raw socket for splice), large pooled reads and inline scheduling. Binds
/// <see cref="IPEndPoint"/>s only (dual-stack when bound to <c>[::]</c> and <see cref="SocketTransportOptions.DualMode"/>).
/// </summary>
/// <example>
/// <code>
/// var ko = new KestrelServerOptions();
/// ko.Listen(endPoint, lo => lo.Use(next => ctx => tcpProxy.HandleAsync(ctx, target, context, default).AsTask()));
/// var server = new KestrelServer(Options.Create(ko), new SocketTransportFactory(options, loggerFactory), loggerFactory);
/// </code>
/// </example>
public sealed class SocketTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private readonly SocketConnectionSettings _settings;

    public SocketTransportFactory(SocketTransportOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        _settings = new SocketConnectionSettings(options ?? new SocketTransportOptions(), loggerFactory);
    }

    /// <summary>The buffer pool shared by all connections of all listeners of this factory.</summary>
    public PinnedBlockMemoryPool Pool => _settings.Pool;

    /// <summary>
    /// Which bound endpoints accept their connections without a .NET <see cref="Socket"/> (with event loops, on Linux):
    /// <c>accept4</c> on the loop, three system calls fewer per connection. For listeners whose connections are served
    /// through <see cref="ConnectionContext.Transport"/> alone; a connection that needs its socket anyway (a feature's
    /// <see cref="Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature.Socket"/>, a takeover) gets one
    /// made on first use, at seven system calls. Null (the default): every listener accepts with .NET.
    /// </summary>
    public Func<IPEndPoint, bool>? AcceptWithoutSocket { get; set; }

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip)
        {
            throw new NotSupportedException($"Only IP endpoints can be bound, not {endpoint.GetType().Name}.");
        }

        var options = _settings.Options;
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any) && options.DualMode)
            {
                socket.DualMode = true;
            }

            AllowRebindOverTimeWait(socket);
            socket.Bind(ip);
            socket.Listen(options.Backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var withoutSocket = AcceptWithoutSocket?.Invoke(ip) ?? false;
        return new ValueTask<IConnectionListener>(new SocketConnectionListener(socket, _settings, withoutSocket));
    }

    public void Dispose() => _settings.Dispose();

    /// <summary>
    /// SO_REUSEADDR alone: a restarted proxy binds while its old connections linger in TIME_WAIT, and a port another
    /// process listens on still fails with "address in use". Not <see cref="SocketOptionName.ReuseAddress"/>: on Linux
    /// .NET also sets SO_REUSEPORT with it, and two processes that both set it share the port (the kernel splits the
    /// connections between them) instead of the second one failing.
    /// </summary>
    private static void AllowRebindOverTimeWait(Socket socket)
    {
        if (OperatingSystem.IsLinux())
        {
            const int SolSocket = 1;
            const int SoReuseAddr = 2;
            Span<byte> on = stackalloc byte[sizeof(int)];
            BitConverter.TryWriteBytes(on, 1);
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, on);
        }
    }
}

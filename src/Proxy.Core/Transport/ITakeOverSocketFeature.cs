using System.Net.Sockets;

namespace Proxy.Core.Transport;

/// <summary>
/// Lets a connection stage take the raw socket before the transport has read any byte of it
/// (for splice(2) forwarding). Kestrel's stock transport starts reading before middleware runs; ours
/// starts its read and write loops only when <c>ConnectionContext.Transport</c> is first used.
/// </summary>
public interface ITakeOverSocketFeature
{
    /// <summary>
    /// Detaches the socket: the transport will never read from or write to it, and will not close it.
    /// The caller owns it from now on. Returns false once the transport has started using the socket.
    /// </summary>
    bool TryTakeOver(out Socket socket);

    /// <summary>
    /// Whether <see cref="TryTakeOver"/> would succeed now (nothing has used the socket yet). Lets a stage
    /// check both connections before detaching either. Implementations that cannot tell say true and
    /// let <see cref="TryTakeOver"/> decide.
    /// </summary>
    bool CanTakeOver => true;
}

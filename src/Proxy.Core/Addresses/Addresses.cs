using System.Net;

namespace Proxy.Core.Addresses;

// Distinct address types so a captured destination can never be confused with the peer or the
// local socket address (the linkerd2-proxy habit, see STYLE.md).

/// <summary>The address of the client that opened a downstream connection (the socket's remote end).</summary>
public readonly record struct ClientAddress(IPEndPoint EndPoint)
{
    public override string ToString() => EndPoint.ToString();
}

/// <summary>The local address a downstream connection was accepted on (after NAT: the listener).</summary>
public readonly record struct ListenAddress(IPEndPoint EndPoint)
{
    public override string ToString() => EndPoint.ToString();
}

/// <summary>The destination the client originally dialled, before iptables REDIRECT rewrote it.</summary>
public readonly record struct OriginalDestination(IPEndPoint EndPoint)
{
    public override string ToString() => EndPoint.ToString();
}

/// <summary>An upstream endpoint the proxy connects to (a service instance or a passthrough target).</summary>
public readonly record struct UpstreamAddress(IPEndPoint EndPoint)
{
    public override string ToString() => EndPoint.ToString();
}

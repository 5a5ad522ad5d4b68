using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Discovery;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Endpoint sets that change at runtime (DNS discovery, reload; <see cref="Service.UpdateEndpoints"/>): a service may have
/// no endpoints at a given moment. Each pick reads the service's current snapshot once (<see cref="Service.TryPick(in BalancerContext, out Endpoint)"/>);
/// a request keeps the <see cref="Endpoint"/> it picked until it ends, even when that endpoint left the set meanwhile
/// (it drains: the pools close its connections once they come back idle).
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    /// <summary>503 <c>no_endpoint</c> for a known service (or subset) that has no endpoints right now, saying why.</summary>
    private ValueTask<bool> RespondNoEndpointAsync(Service service)
    {
        var where = _route is { Length: > 0 } route ? $"(route {route} on listener {_forwarder.Listener})" : $"on listener {_forwarder.Listener}";
        return RespondAsync(503, ProxyErrors.NoEndpoint, $"{service.DescribeNoEndpoint()} {where}, so there is nowhere to send the request");
    }

    /// <summary>
    /// A retry's endpoint: another than <paramref name="failed"/> when the service has one (three picks at most); false
    /// when the service has no endpoints now.
    /// </summary>
    private static bool TryPickForRetry(Service service, in BalancerContext context, UpstreamAddress failed, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Endpoint? endpoint)
    {
        if (!service.TryPick(in context, out endpoint))
        {
            return false;
        }

        for (var i = 0; i < 2 && endpoint.Address.Equals(failed); i++)
        {
            if (!service.TryPick(in context, out var next))
            {
                break;
            }

            endpoint = next;
        }

        return true;
    }
}

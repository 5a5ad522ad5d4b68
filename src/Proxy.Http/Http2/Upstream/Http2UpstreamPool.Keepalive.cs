using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Http.Http2.Client;

namespace Proxy.Http.Http2.Upstream;

/// <summary>
/// Keepalive of the pool's connections: each connection pings its server itself (<see cref="Http2ClientConnection"/>,
/// Keepalive.cs) with the interval and timeout of its endpoint's service (<see cref="Http2UpstreamPoolOptions.KeepaliveFor"/>).
/// A connection declared dead goes away like one that got a GOAWAY (it leaves the list, the next rent opens a new one),
/// its open streams end ConnectionLost (the forwarder answers 502, retried under its rules); here it is logged as a
/// warning, counted, and its transport aborted when the close cannot finish (a silent peer holding a flush).
/// </summary>
public sealed partial class Http2UpstreamPool
{
    /// <summary>The client options for a new connection to <paramref name="address"/> and the service to name in its keepalive reports.</summary>
    private (Http2ClientOptions Options, string Service) ClientOptionsFor(UpstreamAddress address)
    {
        var client = _options.Client;
        if (_options.KeepaliveFor?.Invoke(address) is not { } keepalive)
        {
            return (client, "");
        }

        if (keepalive.Interval == client.KeepaliveInterval && keepalive.Timeout == client.KeepaliveTimeout)
        {
            return (client, keepalive.Service ?? "");
        }

        // One record per new connection (connects are rare next to requests).
        return (client with { KeepaliveInterval = keepalive.Interval, KeepaliveTimeout = keepalive.Timeout }, keepalive.Service ?? "");
    }

    private void OnKeepaliveTimeout(EndpointState endpoint, Http2PooledConnection pooled)
    {
        Log.KeepaliveTimeout(_logger, endpoint.Address, pooled.Service, pooled.Client.CloseReason ?? "keepalive timeout");
        _metrics?.Http2KeepaliveTimeouts.Add(1, new KeyValuePair<string, object?>("service", pooled.Service));
        _ = AbortIfCloseHangsAsync(pooled);
    }

    /// <summary>
    /// The client connection closes itself (GOAWAY best effort, streams ended); when a peer that reads nothing keeps that
    /// from finishing within two keepalive timeouts, the socket is aborted.
    /// </summary>
    private async Task AbortIfCloseHangsAsync(Http2PooledConnection pooled)
    {
        var grace = pooled.Client.KeepaliveTimeoutSetting * 2;
        try
        {
            await pooled.Client.Closed.WaitAsync(grace, _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            pooled.Transport.Abort();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3304, Level = LogLevel.Warning, Message = "HTTP/2 connection to {Endpoint} (service {Service}) is dead, closing it: {Reason}")]
        public static partial void KeepaliveTimeout(ILogger logger, UpstreamAddress endpoint, string service, string reason);
    }
}

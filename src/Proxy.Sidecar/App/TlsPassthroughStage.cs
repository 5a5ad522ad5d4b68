using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Tls.Passthrough;

namespace Proxy.Sidecar.App;

/// <summary>The SNI routes of one explicit listener or one service: server names to services, and the default.</summary>
internal sealed class SniRouter(ServerNameTable<Service> table, Service? fallback)
{
    /// <summary>Where connections with no SNI, no matching name, or no TLS at all go; null closes them.</summary>
    public Service? Fallback { get; } = fallback;

    public bool TryMatch(string serverName, out Service? service) => table.TryMatch(serverName, out service);

    /// <summary>The table of <paramref name="routes"/> (validated by the config loader, so every service exists).</summary>
    public static SniRouter Build(IReadOnlyList<SniRouteConfig> routes, ServiceRegistry services, Service? fallback)
    {
        var patterns = new List<KeyValuePair<string, Service>>();
        foreach (var route in routes)
        {
            var service = services.FindByName(route.Service) ?? throw new ArgumentException($"SNI route to unknown service \"{route.Service}\"", nameof(routes));
            foreach (var name in route.ServerNames)
            {
                patterns.Add(new(name, service));
            }
        }

        return new SniRouter(new ServerNameTable<Service>(patterns), fallback);
    }
}

/// <summary>Where a TLS passthrough connection goes: a service (with the SNI seen, for logs), or closed with a reason.</summary>
internal readonly record struct SniDecision(Service? Service, string? ServerName, string? Cause, string? Reason)
{
    public bool Close => Service is null;
}

/// <summary>
/// TLS passthrough by SNI (Envoy's tls_inspector + <c>filter_chain_match.server_names</c> + tcp_proxy). For a connection
/// that starts with a TLS record: peek the whole ClientHello (<see cref="ClientHelloPeeker"/>, nothing consumed), match
/// its server name, and hand the chosen service to the opaque TCP stage, which forwards the still-encrypted bytes (and
/// may splice, since nothing was read).
/// <list type="bullet">
/// <item>SNI matches a route (exact, else the longest <c>*.suffix</c>): that route's service;</item>
/// <item>no SNI, no match, or not TLS at all: the default (the explicit listener's <c>service</c>, or for captured
/// traffic the service dialled), else the connection is closed (Envoy without a default filter chain);</item>
/// <item>a malformed ClientHello, one still incomplete when the detection timeout ends, or a client that closes first:
/// closed and logged (Envoy's tls_inspector closes too).</item>
/// </list>
/// </summary>
internal sealed partial class TlsPassthroughStage(ClientHelloPeeker peeker, TimeSpan timeout, ILogger logger)
{
    /// <summary>How long a ClientHello may take (the detection timeout).</summary>
    public TimeSpan Timeout { get; } = timeout;

    public async ValueTask<SniDecision> RouteAsync(string listener, Socket socket, SniRouter router, long deadlineMs, CancellationToken cancellationToken)
    {
        var hello = await peeker.PeekAsync(socket, deadlineMs, cancellationToken);
        switch (hello.Outcome)
        {
            case ClientHelloPeekOutcome.Parsed:
                if (hello.ServerName is { } name && router.TryMatch(name, out var matched))
                {
                    LogRouted(logger, listener, name, matched!.Name);
                    return new SniDecision(matched, name, null, null);
                }

                if (router.Fallback is { } fallback)
                {
                    LogDefault(logger, listener, hello.ServerName ?? "(none)", fallback.Name);
                    return new SniDecision(fallback, hello.ServerName, null, null);
                }

                return new SniDecision(null, hello.ServerName, "no_sni_route", hello.ServerName is null
                    ? "the ClientHello has no SNI and the listener has no default service"
                    : $"no SNI route matches \"{hello.ServerName}\" and the listener has no default service");
            case ClientHelloPeekOutcome.NotTls:
                if (router.Fallback is { } plain)
                {
                    LogDefault(logger, listener, "(not TLS)", plain.Name);
                    return new SniDecision(plain, null, null, null);
                }

                return new SniDecision(null, null, "no_sni_route", "the connection is not TLS and the listener has no default service");
            case ClientHelloPeekOutcome.Invalid:
                return new SniDecision(null, null, "bad_client_hello", $"malformed TLS ClientHello ({hello.Describe()})");
            case ClientHelloPeekOutcome.TimedOut:
                return new SniDecision(null, null, "client_hello_timeout", $"the TLS ClientHello was incomplete after {Timeout.TotalSeconds:0.###} s ({hello.BytesPeeked} bytes)");
            case ClientHelloPeekOutcome.ClientClosed:
                return new SniDecision(null, null, "client_closed", "the client closed before its TLS ClientHello was complete");
            default:
                return new SniDecision(null, null, "client_failed", "the connection failed while its TLS ClientHello was read");
        }
    }

    [LoggerMessage(EventId = 110, Level = LogLevel.Debug, Message = "Listener {Listener}: TLS passthrough, SNI {ServerName} routed to service {Service}")]
    private static partial void LogRouted(ILogger logger, string listener, string serverName, string service);

    [LoggerMessage(EventId = 111, Level = LogLevel.Debug, Message = "Listener {Listener}: TLS passthrough, SNI {ServerName} matches no route; default service {Service}")]
    private static partial void LogDefault(ILogger logger, string listener, string serverName, string service);
}

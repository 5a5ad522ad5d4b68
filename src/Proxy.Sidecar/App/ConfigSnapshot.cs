using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Http.Authorization;
using Proxy.Http.Forwarding;

namespace Proxy.Sidecar.App;

/// <summary>What one running listener routes by in one snapshot (explicit listeners; capture listeners only use <see cref="Security"/>).</summary>
/// <param name="Service">The listener's <c>service</c> (opaque TCP, SNI default), or null.</param>
/// <param name="Routing">How its HTTP requests are routed (its routes, else all to its service), or null (SNI-only listener).</param>
/// <param name="Sni">Its SNI routes, or null.</param>
/// <param name="Security">JWT and policy checks of its HTTP requests (null: none).</param>
internal sealed record ListenerView(Service? Service, Http1Routing? Routing, SniRouter? Sni, HttpSecurity? Security);

/// <summary>
/// One immutable view of everything a reload can change without rebinding a socket: the services (endpoints, balancers,
/// subsets, retries, upstream protocol, TLS origination, mesh), their routes and SNI routes, and per running listener its
/// service, routes, SNI routes and request security. <see cref="ConfigState"/> holds the one in force; a reload builds a
/// new one from the previous (unchanged endpoints keep their objects) and swaps it in whole, so a connection (TCP) or a
/// request (HTTP) sees either the old or the new snapshot, never a mix.
/// </summary>
internal sealed class ConfigSnapshot
{
    /// <summary>The effective configuration (what <c>/config</c> shows): the file's services, routes and policies over the running listeners and settings.</summary>
    public required ProxyConfig Config { get; init; }

    public required ServiceRegistry Services { get; init; }

    /// <summary>Captured HTTP traffic to a service's virtual address: its routes, or the whole service; by service name.</summary>
    public required IReadOnlyDictionary<string, Http1Routing> ServiceRouting { get; init; }

    /// <summary>SNI routes of captured TLS to a service's virtual address, by service name (services without: absent).</summary>
    public required IReadOnlyDictionary<string, SniRouter> ServiceSni { get; init; }

    /// <summary>Every running listener by name (explicit and capture).</summary>
    public required IReadOnlyDictionary<string, ListenerView> Listeners { get; init; }

    /// <summary>1 for the configuration the process started with, then one more per applied reload.</summary>
    public required long Generation { get; init; }
}

/// <summary>
/// The configuration snapshot in force, swapped atomically on reload. Connections read <see cref="Current"/> once when
/// they arrive (destination, SNI routes, TCP endpoint); HTTP connections route through <see cref="FollowListener"/> /
/// <see cref="FollowService"/>, which read it again before every request (<see cref="IHttp1RoutingSource"/>).
/// </summary>
internal sealed class ConfigState(ConfigSnapshot initial)
{
    private ConfigSnapshot _current = initial;

    // One following routing per (listener, service name), made on first use; service names are bounded by the configs seen.
    private readonly ConcurrentDictionary<(string Listener, string Service), Http1Routing> _serviceFollowers = new();

    public ConfigSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Puts <paramref name="next"/> in force; returns the snapshot it replaced.</summary>
    public ConfigSnapshot Swap(ConfigSnapshot next) => Interlocked.Exchange(ref _current, next);

    /// <summary>A routing that follows <paramref name="listener"/>'s routes (or service) across reloads; null when it has none now.</summary>
    public Http1Routing? FollowListener(string listener)
        => Current.Listeners.TryGetValue(listener, out var view) && view.Routing is not null
            ? Http1Routing.Follow(new ListenerSource(this, listener))
            : null;

    /// <summary>A routing that follows <paramref name="service"/>'s routes across reloads, for captured traffic on <paramref name="listener"/>.</summary>
    public Http1Routing FollowService(string listener, Service service)
        => _serviceFollowers.GetOrAdd((listener, service.Name), static (key, state) => Http1Routing.Follow(new ServiceSource(state, key.Listener, key.Service)), this);

    /// <summary>What a source found in one snapshot; looked up again only when the snapshot changes (no per-request lookups).</summary>
    private sealed record Resolved(ConfigSnapshot Snapshot, Http1Routing? Routing, HttpSecurity? Security);

    /// <summary>An explicit listener's routing in the current snapshot (kept when it has none now).</summary>
    private sealed class ListenerSource(ConfigState state, string listener) : IHttp1RoutingSource
    {
        private Resolved? _last;

        public bool TryGetCurrent([NotNullWhen(true)] out Http1Routing? routing, out HttpSecurity? security)
        {
            var snapshot = state.Current;
            var last = Volatile.Read(ref _last);
            if (last is null || !ReferenceEquals(last.Snapshot, snapshot))
            {
                // Every running listener has a view in every snapshot.
                var view = snapshot.Listeners[listener];
                last = new Resolved(snapshot, view.Routing, view.Security);
                Volatile.Write(ref _last, last);
            }

            routing = last.Routing;
            security = last.Security;
            return routing is not null;
        }
    }

    /// <summary>A service's routing in the current snapshot (kept when the service is gone: its open connections finish on it).</summary>
    private sealed class ServiceSource(ConfigState state, string listener, string service) : IHttp1RoutingSource
    {
        private Resolved? _last;

        public bool TryGetCurrent([NotNullWhen(true)] out Http1Routing? routing, out HttpSecurity? security)
        {
            var snapshot = state.Current;
            var last = Volatile.Read(ref _last);
            if (last is null || !ReferenceEquals(last.Snapshot, snapshot))
            {
                last = new Resolved(snapshot, snapshot.ServiceRouting.GetValueOrDefault(service), snapshot.Listeners[listener].Security);
                Volatile.Write(ref _last, last);
            }

            routing = last.Routing;
            security = last.Security;
            return routing is not null;
        }
    }
}

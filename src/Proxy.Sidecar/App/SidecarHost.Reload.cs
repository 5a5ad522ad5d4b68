using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Core.Upstream;
using Proxy.Http.Authorization;
using Proxy.Http.Forwarding;
using Proxy.Http.Routing;

namespace Proxy.Sidecar.App;

/// <summary>
/// Config reload (issue 6 parts 1 and 9): builds a <see cref="ConfigSnapshot"/> for a configuration and swaps it into
/// <see cref="ConfigState"/>. What carries over from the previous snapshot, so nothing in flight is disturbed:
/// <list type="bullet">
/// <item>endpoint objects of unchanged endpoints (<see cref="ServiceRegistry"/>'s <c>previous</c>): in-flight counts
/// and latency estimates go on, requests started before the swap end on the object the new balancer sees;</item>
/// <item>a service's own upstreams (TLS origination, mesh pools) while its <c>tls</c> and <c>mesh</c> are unchanged;</item>
/// <item>route JWT authenticators while their <c>jwt</c> object is unchanged.</item>
/// </list>
/// What a reload replaced (service pools, JWKS sources) is disposed once the drain timeout has passed, by when the
/// requests that started on it have ended (or the drain would have cut them anyway). The shared per-endpoint pools stay;
/// connections to a removed endpoint that are in use finish their exchange, idle ones are closed at once
/// (<see cref="FollowDiscoveryAsync"/>: the pools retire the endpoint, as when DNS drops it).
/// </summary>
internal sealed partial class SidecarHost
{
    private readonly Dictionary<string, ListenerBinding> _bindings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Key, ServiceUpstreams? Upstreams)> _upstreamCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (JwtAuthenticator Authenticator, JwksSource Source)> _routeJwtCache = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _reloadLock = new(1, 1);
    private readonly List<Task> _retiring = [];
    private readonly CancellationTokenSource _disposing = new();
    private ConfigState? _state;
    private Func<ServiceConfig, ServiceUpstreams?>? _upstreamsFor;
    private Func<JwtConfig, JwtAuthenticator>? _authenticator;
    private int _reloadDisposed;

    /// <summary>What a listener keeps from the start: whether the policies apply to it, its own JWT authenticator.</summary>
    private sealed record ListenerBinding(AuthorizationState? Policies, JwtAuthenticator? Jwt);

    /// <summary>Tests only: false leaves the config file unwatched (reloads by POST /reload only), so a test knows which reload applied a change.</summary>
    internal bool WatchConfigFile { get; init; } = true;

    /// <summary>The snapshot in force (after <see cref="StartAsync"/>).</summary>
    internal ConfigSnapshot Snapshot => (_state ?? throw new InvalidOperationException("The host has not started.")).Current;

    /// <summary>
    /// Applies a validated configuration: builds the snapshot of what can change live (services, routes, policies) from
    /// the running one and swaps it in; reports what needs a restart. Serialized (one reload at a time).
    /// </summary>
    internal async Task<ConfigDiff> ApplyReload(ProxyConfig next, CancellationToken cancellationToken)
    {
        await _reloadLock.WaitAsync(cancellationToken);
        try
        {
            var state = _state ?? throw new InvalidOperationException("The host has not started.");
            var previous = state.Current;
            var diff = ConfigDiff.Compute(previous.Config, next);
            if (diff.IsEmpty)
            {
                return diff;
            }

            var jwksBefore = _jwks.Count;
            var upstreamsBefore = _upstreamCache.ToDictionary(static p => p.Key, static p => p.Value.Upstreams, StringComparer.Ordinal);
            var jwtBefore = _routeJwtCache.ToDictionary(static p => p.Key, static p => p.Value.Source, StringComparer.Ordinal);
            var snapshot = BuildSnapshot(diff.Effective, previous);

            // New JWKS sources load their keys before the first request can need them.
            for (var i = jwksBefore; i < _jwks.Count; i++)
            {
                await _jwks[i].StartAsync(cancellationToken);
            }

            Authorization.Update(new AuthorizationPolicies(diff.Effective.Authorization));
            foreach (var warning in Authorization.Current.Warnings)
            {
                ConfigReloader.LogPolicyWarning(_loggerFactory.CreateLogger<ConfigReloader>(), warning);
            }

            state.Swap(snapshot);
            await ReplaceHealthAsync(snapshot.Services);
            await FollowDiscoveryAsync(previous.Services, snapshot.Services, cancellationToken);

            // Retire what the new snapshot no longer uses, after the drain timeout.
            var retired = new List<Func<ValueTask>>();
            foreach (var (name, upstreams) in upstreamsBefore)
            {
                if (upstreams is not null && (!_upstreamCache.TryGetValue(name, out var now) || !ReferenceEquals(now.Upstreams, upstreams)))
                {
                    retired.Add(() => DisposeUpstreamsAsync(upstreams));
                }
            }

            foreach (var (key, source) in jwtBefore)
            {
                if (!_routeJwtCache.ContainsKey(key))
                {
                    // Stays in _jwks (disposed again at shutdown: Dispose is idempotent), so indexes into it stay valid.
                    retired.Add(() =>
                    {
                        source.Dispose();
                        return ValueTask.CompletedTask;
                    });
                }
            }

            if (retired.Count > 0)
            {
                Retire(retired);
            }

            return diff;
        }
        finally
        {
            _reloadLock.Release();
        }
    }

    /// <summary>
    /// The snapshot of <paramref name="config"/>: services (endpoint objects carried over from <paramref name="previous"/>),
    /// their routing and SNI routes, and a view per running listener. Certificate files of new TLS services are read here
    /// (a failure throws <c>CertificateLoadException</c> naming the service, and nothing is swapped). At start the registry
    /// is the one <see cref="StartAsync"/> built (<paramref name="built"/>).
    /// </summary>
    private ConfigSnapshot BuildSnapshot(ProxyConfig config, ConfigSnapshot? previous, ServiceRegistry? built = null)
    {
        // --- services: their own upstreams reused while tls and mesh are unchanged ---
        var used = new HashSet<string>(StringComparer.Ordinal);
        ServiceUpstreams? Upstreams(ServiceConfig service)
        {
            used.Add(service.Name);
            var key = UpstreamsKey(service);
            if (_upstreamCache.TryGetValue(service.Name, out var cached) && cached.Key == key)
            {
                return cached.Upstreams;
            }

            var made = _upstreamsFor!(service);
            _upstreamCache[service.Name] = (key, made);
            return made;
        }

        var services = built ?? new ServiceRegistry(config.Services, upstreams: Upstreams, previous: previous?.Services);
        if (built is not null)
        {
            foreach (var s in config.Services)
            {
                used.Add(s.Name);
                _upstreamCache[s.Name] = (UpstreamsKey(s), built.FindByName(s.Name)?.Upstreams);
            }
        }

        foreach (var name in _upstreamCache.Keys.Where(n => !used.Contains(n)).ToArray())
        {
            _upstreamCache.Remove(name);
        }

        var serviceRouting = new Dictionary<string, Http1Routing>(StringComparer.Ordinal);
        var serviceSni = new Dictionary<string, SniRouter>(StringComparer.Ordinal);
        foreach (var s in config.Services)
        {
            serviceRouting[s.Name] = s.Routes.Count > 0
                ? Http1Routing.ForRoutes(new RouteTable(s.Routes), services.FindByName)
                : Http1Routing.ForService(services.FindByName(s.Name)!);
            if (s.Sni.Count > 0)
            {
                serviceSni[s.Name] = SniRouter.Build(s.Sni, services, services.FindByName(s.Name));
            }
        }

        // --- route JWT: one authenticator per distinct jwt object, reused across reloads ---
        var routeJwt = new List<KeyValuePair<RouteConfig, JwtAuthenticator>>();
        var jwtUsed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var route in config.Services.SelectMany(static s => s.Routes).Concat(config.Listeners.SelectMany(static l => l.Routes)))
        {
            if (route.Jwt is { } jwt)
            {
                var key = JwtKey(jwt);
                jwtUsed.Add(key);
                if (!_routeJwtCache.TryGetValue(key, out var cached))
                {
                    var authenticator = _authenticator!(jwt);
                    cached = (authenticator, _jwks[^1]);
                    _routeJwtCache[key] = cached;
                }

                routeJwt.Add(new(route, cached.Authenticator));
            }
        }

        foreach (var key in _routeJwtCache.Keys.Where(k => !jwtUsed.Contains(k)).ToArray())
        {
            _routeJwtCache.Remove(key);
        }

        // --- a view per running listener ---
        var listeners = new Dictionary<string, ListenerView>(StringComparer.Ordinal);
        foreach (var (name, binding) in _bindings)
        {
            var security = new HttpSecurity(binding.Policies, binding.Jwt, routeJwt);
            var view = new ListenerView(null, null, null, security.IsEmpty ? null : security);
            if (config.Listeners.FirstOrDefault(l => l.Name == name) is { } listener)
            {
                var service = listener.Service.Length > 0 ? services.FindByName(listener.Service) : null;
                if (listener.Service.Length > 0 && service is null && previous?.Listeners.GetValueOrDefault(name) is { } kept)
                {
                    // A listener removed from the file keeps serving (until a restart) as it did, if its service is gone too.
                    view = kept with { Security = view.Security };
                }
                else
                {
                    var routing = listener.Routes.Count > 0 ? Http1Routing.ForRoutes(new RouteTable(listener.Routes), services.FindByName)
                        : service is not null ? serviceRouting[service.Name]
                        : null;
                    var sni = listener.Sni.Count > 0 ? SniRouter.Build(listener.Sni, services, service) : null;
                    view = view with { Service = service, Routing = routing, Sni = sni };
                }
            }

            listeners[name] = view;
        }

        return new ConfigSnapshot
        {
            Config = config,
            Services = services,
            ServiceRouting = serviceRouting,
            ServiceSni = serviceSni,
            Listeners = listeners,
            Generation = (previous?.Generation ?? 0) + 1,
        };
    }

    /// <summary>
    /// Outlier detection and health checks follow the new registry: a monitor over its services (whose endpoints carried
    /// over keep their health and ejection state, which lives on the endpoints) replaces the previous one.
    /// </summary>
    private async Task ReplaceHealthAsync(ServiceRegistry next)
    {
        if (_healthMetrics is null)
        {
            return;
        }

        var previous = _healthMonitor;
        _healthMonitor = HealthMonitor.Start(next.Services, _healthMetrics, _loggerFactory);
        if (previous is not null)
        {
            await previous.DisposeAsync();
        }
    }

    /// <summary>
    /// Discovery follows a reload: every pool retires the addresses no service of the new registry has (idle connections
    /// closed now, busy ones when their exchange ends), and DNS discovery moves to the new services (a service whose
    /// <c>dns</c> is unchanged starts from the endpoints DNS gave it, see <see cref="ServiceRegistry"/>'s previous).
    /// </summary>
    private async Task FollowDiscoveryAsync(ServiceRegistry previous, ServiceRegistry next, CancellationToken cancellationToken)
    {
        previous.EndpointRetired -= RetireEverywhere;

        // Circuit breaker gauges follow the new services (connectors ask Services, which StartDiscoveryAsync sets).
        foreach (var breaker in previous.Breakers)
        {
            Metrics.Untrack(breaker);
        }

        foreach (var breaker in next.Breakers)
        {
            Metrics.Track(breaker);
        }

        if (_dnsDiscovery is { } old)
        {
            _dnsDiscovery = null;
            await old.DisposeAsync();
        }

        await StartDiscoveryAsync(next, _loggerFactory.CreateLogger<ConfigReloader>(), cancellationToken);
        foreach (var address in next.RetiredSince(previous))
        {
            RetireEverywhere(address);
        }
    }

    /// <summary>What a service's own upstreams are made from (<c>tls</c>, <c>mesh</c>), rendered in the file's schema.</summary>
    private static string UpstreamsKey(ServiceConfig service)
        => ConfigJson.ToJson(new ProxyConfig { Services = [new ServiceConfig(service.Name, [], []) { Tls = service.Tls, Mesh = service.Mesh }] }, indented: false);

    private static string JwtKey(JwtConfig jwt)
        => string.Join('\n', jwt.Issuer, jwt.Jwks, jwt.JwksRefresh.Ticks, jwt.ForwardSubjectHeader ?? "", string.Join(' ', jwt.Audiences));

    private void Retire(List<Func<ValueTask>> disposals)
    {
        var grace = _config.DrainTimeout;
        var token = _disposing.Token;
        async Task RunAsync()
        {
            try
            {
                await Task.Delay(grace, token);
            }
            catch (OperationCanceledException)
            {
                // Shutting down: dispose now.
            }

            foreach (var dispose in disposals)
            {
                await dispose();
            }
        }

        lock (_retiring)
        {
            _retiring.RemoveAll(static t => t.IsCompleted);
            _retiring.Add(RunAsync());
        }
    }

    private static async ValueTask DisposeUpstreamsAsync(ServiceUpstreams upstreams)
    {
        foreach (var pool in new[] { upstreams.Http1Pool, upstreams.Http2Pool })
        {
            // It stays in _servicePools (disposed again at shutdown: DisposeAsync is idempotent).
            if (pool is IAsyncDisposable disposable)
            {
                await disposable.DisposeAsync();
            }
        }
    }

    private async Task DisposeRetiredAsync()
    {
        if (Interlocked.Exchange(ref _reloadDisposed, 1) != 0)
        {
            return;
        }

        await _disposing.CancelAsync();
        Task[] pending;
        lock (_retiring)
        {
            pending = [.. _retiring];
        }

        await Task.WhenAll(pending);
        _disposing.Dispose();
        _reloadLock.Dispose();
    }
}

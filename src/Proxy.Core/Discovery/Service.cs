using System.Diagnostics.CodeAnalysis;
using System.Net;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Upstream;

namespace Proxy.Core.Discovery;

/// <summary>
/// A service (or one subset of it) as the data plane sees it: its name and a balancer over its current endpoints.
/// <para>
/// The endpoints can change at runtime (<see cref="UpdateEndpoints"/>: DNS answers, config reload). The endpoint set and
/// its balancer are one immutable snapshot held in a volatile field: a pick reads the field once and sees one consistent
/// set, an update builds the next snapshot aside and swaps it in. Endpoints whose address and weight did not change keep
/// their <see cref="Endpoint"/> object (in-flight count, latency estimate, health state), so a request that started
/// before the swap ends on the same object it started on. A subset's endpoints are the same objects as the whole
/// service's and follow every update.
/// </para>
/// A service may have no endpoints (a DNS name with no records, or not looked up yet): <see cref="TryPick(in BalancerContext, out Endpoint)"/>
/// then returns false and <see cref="NoEndpointReason"/> says why.
/// </summary>
public sealed class Service
{
    private readonly BalancerKind _kind;
    private readonly BalancerOptions _options;
    private readonly Lock _updateLock = new();

    // A subset's member addresses (normalized); null for the whole service.
    private readonly HashSet<IPEndPoint>? _members;
    private Dictionary<string, Service>? _subsets;
    private volatile Snapshot _snapshot;

    /// <summary>A service of <paramref name="kind"/> balancing over <paramref name="endpoints"/> (may be empty).</summary>
    public Service(string name, BalancerKind kind, IReadOnlyList<WeightedAddress> endpoints, BalancerOptions? options = null, HashOn hashOn = HashOn.None, string? hashKey = null)
        : this(name, kind, options, hashOn, hashKey, members: null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var unique = Deduplicate(endpoints);
        _snapshot = unique.Count == 0 ? Snapshot.Empty : Build(EndpointSet.Create(unique, _options));
    }

    /// <summary>A service over a balancer built elsewhere (its kind and endpoints are the balancer's).</summary>
    public Service(string name, ILoadBalancer balancer, HashOn hashOn = HashOn.None, string? hashKey = null)
        : this(name, KindOf(balancer), null, hashOn, hashKey, members: null)
    {
        _snapshot = new Snapshot(balancer.Endpoints, balancer, null);
    }

    private Service(string name, BalancerKind kind, BalancerOptions? options, HashOn hashOn, string? hashKey, HashSet<IPEndPoint>? members)
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
        _kind = kind;
        _options = options ?? BalancerOptions.Default;
        HashOn = hashOn;
        HashKey = hashKey is null ? [] : System.Text.Encoding.ASCII.GetBytes(hashKey);
        _members = members;
        _snapshot = Snapshot.Empty;
    }

    public string Name { get; }

    /// <summary>The balancing algorithm (also when the service has no endpoints, hence no balancer, now).</summary>
    public BalancerKind BalancerKind => _kind;

    /// <summary>The subset's name when this is a subset of <see cref="Name"/>, else null.</summary>
    public string? SubsetName { get; private init; }

    /// <summary>The configuration the service was built from (null when built directly).</summary>
    public ServiceConfig? Config { get; init; }

    /// <summary>
    /// The balancer over the current endpoints. Throws when the service has no endpoints: the data path uses
    /// <see cref="TryPick(in BalancerContext, out Endpoint)"/>, which reads the snapshot once.
    /// </summary>
    public ILoadBalancer Balancer => _snapshot.Balancer ?? throw new InvalidOperationException(DescribeNoEndpoint());

    /// <summary>The current endpoints (empty when there are none); a snapshot: a later update does not change it.</summary>
    public ReadOnlySpan<Endpoint> Endpoints => _snapshot.Set is { } set ? set.AsSpan() : default;

    /// <summary>The current endpoint set (<see cref="EndpointSet.Empty"/> when there are none); a snapshot.</summary>
    public EndpointSet CurrentSet => _snapshot.Set ?? EndpointSet.Empty;

    /// <summary>How many endpoints the service has now.</summary>
    public int EndpointCount => _snapshot.Set?.Count ?? 0;

    /// <summary>Why the service has no endpoints (e.g. what DNS answered), or null when it has some or nobody said.</summary>
    public string? NoEndpointReason => _snapshot.EmptyReason;

    /// <summary>What this service's balancer hashes (ring hash only).</summary>
    public HashOn HashOn { get; }

    /// <summary>Header or cookie name hashed when <see cref="HashOn"/> is Header or Cookie (ASCII bytes), else empty.</summary>
    public byte[] HashKey { get; }

    /// <summary>The HTTP version requests are sent to the endpoints in (<see cref="ServiceConfig.UpstreamProtocol"/>).</summary>
    public UpstreamProtocol UpstreamProtocol { get; init; }

    /// <summary>The service's own connector and pools (TLS origination), or null: the listener's shared ones.</summary>
    public ServiceUpstreams? Upstreams { get; init; }

    /// <summary>The retry policy of requests whose route has none (<see cref="ServiceConfig.Retries"/>), or null.</summary>
    public RetryPolicyConfig? Retries { get; init; }

    /// <summary>How many retries requests to this service may cause (shared by its subsets).</summary>
    public RetryBudget RetryBudget { get; init; } = new(new RetryBudgetConfig());

    /// <summary>Outlier detection and health check state (shared by the subsets), or null when the service has neither.</summary>
    public Proxy.Core.Health.ServiceHealth? Health { get; init; }

    /// <summary>The circuit breakers (<see cref="ServiceConfig.CircuitBreakers"/>, shared by its subsets), or null: no limits.</summary>
    public Proxy.Core.Limits.CircuitBreaker? Breaker { get; init; }

    /// <summary>The rate limit of requests whose route has none (<see cref="ServiceConfig.RateLimit"/>, shared by its subsets), or null.</summary>
    public Proxy.Core.Limits.LocalRateLimiter? RateLimiter { get; init; }

    /// <summary>The named subset (e.g. <c>v2</c>), or null when the service has no such subset.</summary>
    public Service? FindSubset(string subset) => _subsets?.GetValueOrDefault(subset);

    /// <summary>The subsets by name (empty when there are none).</summary>
    public IEnumerable<Service> Subsets => _subsets?.Values ?? Enumerable.Empty<Service>();

    /// <summary>
    /// Adds a subset whose endpoints are those of this service with one of <paramref name="members"/>' addresses, now
    /// and after every <see cref="UpdateEndpoints"/>. A member address the service does not have (yet) is simply not in it.
    /// </summary>
    internal Service AddSubset(string subset, IEnumerable<IPEndPoint> members)
    {
        var set = new HashSet<IPEndPoint>();
        foreach (var m in members)
        {
            set.Add(ServiceRegistry.Normalize(m));
        }

        var child = new Service(Name, _kind, _options, HashOn, HashKey.Length == 0 ? null : System.Text.Encoding.ASCII.GetString(HashKey), set)
        {
            SubsetName = subset,
            Config = Config,
            UpstreamProtocol = UpstreamProtocol,
            Upstreams = Upstreams,
            Retries = Retries,
            RetryBudget = RetryBudget,
            Health = Health,
            Breaker = Breaker,
            RateLimiter = RateLimiter,
        };
        lock (_updateLock)
        {
            child.Follow(_snapshot);
            _subsets ??= new Dictionary<string, Service>(StringComparer.Ordinal);
            _subsets.Add(subset, child);
        }

        return child;
    }

    /// <summary>
    /// Replaces the endpoints (of the whole service; subsets follow) and returns the ones that left. An address that
    /// stays with the same weight keeps its <see cref="Endpoint"/> object; a new or re-weighted one starts fresh. A
    /// repeated address counts once (its first weight). An empty list leaves the service without endpoints:
    /// <paramref name="emptyReason"/> says why (it ends up in the proxy's answer to requests for the service).
    /// Thread-safe; picks running meanwhile see the old or the new set, never a mix.
    /// </summary>
    public IReadOnlyList<Endpoint> UpdateEndpoints(IReadOnlyList<WeightedAddress> endpoints, string? emptyReason = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (_members is not null)
        {
            throw new InvalidOperationException($"subset {SubsetName} of service {Name} follows the service's endpoints: update the service");
        }

        var unique = Deduplicate(endpoints);
        lock (_updateLock)
        {
            var old = _snapshot;
            if (old.Set is { } current && SameEndpoints(current, unique))
            {
                // The usual refresh: nothing changed, so the balancer (and its round-robin position) stays.
                return [];
            }

            Snapshot next;
            if (unique.Count == 0)
            {
                next = new Snapshot(null, null, emptyReason);
            }
            else
            {
                var set = old.Set is { } previous ? previous.Update(unique, _options) : EndpointSet.Create(unique, _options);
                next = Build(set);
            }

            _snapshot = next;
            if (_subsets is not null)
            {
                foreach (var subset in _subsets.Values)
                {
                    subset.Follow(next);
                }
            }

            return Removed(old.Set, next.Set);
        }
    }

    /// <summary>
    /// The first endpoints of a service that replaces <paramref name="previous"/> (config reload): addresses the previous
    /// service had with the same weight keep their <see cref="Endpoint"/> objects.
    /// </summary>
    internal void StartFrom(Service? previous, IReadOnlyList<WeightedAddress> endpoints, string? emptyReason)
    {
        lock (_updateLock)
        {
            if (previous?._snapshot.Set is { } set)
            {
                // A balancer over the carried-over set: when the endpoints did not change, UpdateEndpoints keeps this snapshot.
                _snapshot = Build(set);
            }
        }

        UpdateEndpoints(endpoints, emptyReason);
    }

    /// <summary>Picks an endpoint for a connection from <paramref name="client"/> (its IP is the hash key when the service hashes on the source IP).</summary>
    public bool TryPick(EndPoint? client, [NotNullWhen(true)] out Endpoint? endpoint)
    {
        if (HashOn == HashOn.SourceIp && client is IPEndPoint ip)
        {
            var context = BalancerContext.WithSourceAddress(ip.Address);
            return TryPick(in context, out endpoint);
        }

        return TryPick(BalancerContext.None, out endpoint);
    }

    /// <summary>
    /// Picks an endpoint of the current set; false when the service has no endpoints. Allocation-free. A pick that is
    /// not available (ejected or unhealthy) means every endpoint is out (panic mode: balance over all): counted.
    /// </summary>
    public bool TryPick(in BalancerContext context, [NotNullWhen(true)] out Endpoint? endpoint)
    {
        // One read of the snapshot: the balancer and its set belong together.
        var balancer = _snapshot.Balancer;
        if (balancer is null)
        {
            endpoint = null;
            return false;
        }

        endpoint = balancer.Pick(in context);
        if (!endpoint.IsAvailable)
        {
            Health?.OnPanicPick();
        }

        return true;
    }

    /// <summary>Picks an endpoint for a connection from <paramref name="client"/>; throws when there is none (see <see cref="TryPick(EndPoint?, out Endpoint)"/>).</summary>
    public Endpoint Pick(EndPoint? client)
        => TryPick(client, out var endpoint) ? endpoint : throw new InvalidOperationException(DescribeNoEndpoint());

    /// <summary>One sentence part saying why there is no endpoint, e.g. "service api has no endpoints (DNS: NXDOMAIN)".</summary>
    public string DescribeNoEndpoint()
    {
        var who = SubsetName is null ? $"service {Name}" : $"subset {SubsetName} of service {Name}";
        return _snapshot.EmptyReason is { } reason ? $"{who} has no endpoints ({reason})" : $"{who} has no endpoints";
    }

    public override string ToString() => SubsetName is null ? Name : $"{Name}/{SubsetName}";

    private void Follow(Snapshot parent)
    {
        if (parent.Set is not { } set)
        {
            _snapshot = new Snapshot(null, null, parent.EmptyReason);
            return;
        }

        var picked = new List<Endpoint>();
        foreach (var e in set.AsSpan())
        {
            if (_members!.Contains(e.Address.EndPoint))
            {
                picked.Add(e);
            }
        }

        _snapshot = picked.Count == 0
            ? new Snapshot(null, null, $"none of its {_members!.Count} addresses is among the service's {set.Count} endpoints now")
            : Build(new EndpointSet(picked));
    }

    private Snapshot Build(EndpointSet set) => new(set, LoadBalancers.Create(_kind, set, _options), null);

    private static List<WeightedAddress> Deduplicate(IReadOnlyList<WeightedAddress> endpoints)
    {
        var result = new List<WeightedAddress>(endpoints.Count);
        var seen = new HashSet<IPEndPoint>();
        foreach (var e in endpoints)
        {
            ArgumentNullException.ThrowIfNull(e.Address.EndPoint, nameof(endpoints));
            var normalized = ServiceRegistry.Normalize(e.Address.EndPoint);
            if (seen.Add(normalized))
            {
                result.Add(new WeightedAddress(new UpstreamAddress(normalized), e.Weight));
            }
        }

        return result;
    }

    /// <summary>True when <paramref name="set"/> holds exactly these addresses with these weights (in any order).</summary>
    private static bool SameEndpoints(EndpointSet set, List<WeightedAddress> wanted)
    {
        if (set.Count != wanted.Count)
        {
            return false;
        }

        var have = new HashSet<WeightedAddress>(set.Count);
        foreach (var e in set.AsSpan())
        {
            have.Add(new WeightedAddress(e.Address, e.Weight));
        }

        foreach (var w in wanted)
        {
            if (!have.Contains(w))
            {
                return false;
            }
        }

        return true;
    }

    private static List<Endpoint> Removed(EndpointSet? before, EndpointSet? after)
    {
        var removed = new List<Endpoint>();
        if (before is null)
        {
            return removed;
        }

        var kept = new HashSet<Endpoint>(ReferenceEqualityComparer.Instance);
        if (after is not null)
        {
            foreach (var e in after.AsSpan())
            {
                kept.Add(e);
            }
        }

        foreach (var e in before.AsSpan())
        {
            if (!kept.Contains(e))
            {
                removed.Add(e);
            }
        }

        return removed;
    }

    private static BalancerKind KindOf(ILoadBalancer balancer) => balancer switch
    {
        RandomBalancer => BalancerKind.Random,
        LeastRequestBalancer => BalancerKind.LeastRequest,
        PeakEwmaBalancer => BalancerKind.PeakEwma,
        RingHashBalancer => BalancerKind.RingHash,
        _ => BalancerKind.RoundRobin,
    };

    /// <summary>One consistent view: the endpoints and the balancer over them (both null when there are none).</summary>
    private sealed class Snapshot(EndpointSet? set, ILoadBalancer? balancer, string? emptyReason)
    {
        public static readonly Snapshot Empty = new(null, null, null);

        public EndpointSet? Set { get; } = set;

        public ILoadBalancer? Balancer { get; } = balancer;

        public string? EmptyReason { get; } = emptyReason;
    }
}

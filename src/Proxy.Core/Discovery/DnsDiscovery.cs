using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;

namespace Proxy.Core.Discovery;

/// <summary>
/// Keeps the endpoints of every service with <c>dns</c> in step with DNS: one loop per service looks its name up,
/// puts the answer (plus the service's static endpoints) in with <see cref="ServiceRegistry.UpdateEndpoints"/>, and
/// waits for the answer's TTL clamped to [minRefresh, maxRefresh] before the next lookup.
/// <code>
/// lookup ─► success (records)        ─► endpoints = static + records; wait clamp(TTL)
///        ─► NXDOMAIN / no records    ─► endpoints = static only (DNS says there are none); wait minRefresh
///        ─► timeout / SERVFAIL / ... ─► endpoints unchanged (the last good answer stays); wait minRefresh
/// </code>
/// An update keeps the <see cref="Endpoint"/> objects of addresses that stay; removed ones drain (requests in flight
/// finish; pools close their connections). <see cref="StartAsync"/> waits (bounded) for every first answer, so the
/// sidecar does not report ready with services that DNS would fill a moment later.
/// </summary>
public sealed partial class DnsDiscovery : IAsyncDisposable
{
    private readonly ServiceRegistry _registry;
    private readonly IDnsResolver _resolver;
    private readonly DiscoveryMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];

    public DnsDiscovery(ServiceRegistry registry, IDnsResolver resolver, DiscoveryMetrics? metrics = null, ILogger? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(resolver);
        _registry = registry;
        _resolver = resolver;
        _metrics = metrics;
        _logger = logger ?? NullLogger.Instance;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The services this discovery follows (those with <c>dns</c>).</summary>
    public IEnumerable<Service> Services => _registry.Services.Where(static s => s.Config?.Dns is not null);

    /// <summary>
    /// Starts one loop per DNS service and returns when each has had its first lookup, or after
    /// <paramref name="firstAnswerWait"/> (the loops go on either way).
    /// </summary>
    public async Task StartAsync(TimeSpan firstAnswerWait, CancellationToken cancellationToken = default)
    {
        var first = new List<Task>();
        foreach (var service in Services)
        {
            var firstDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            first.Add(firstDone.Task);
            _loops.Add(RunAsync(service, service.Config!.Dns!, firstDone));
        }

        if (first.Count == 0)
        {
            return;
        }

        try
        {
            await Task.WhenAll(first).WaitAsync(firstAnswerWait, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Log.FirstLookupsSlow(_logger, firstAnswerWait.TotalMilliseconds);
        }
    }

    /// <summary>Looks every DNS service up once now (tests; an operator's "refresh now").</summary>
    public async Task RefreshAllAsync(CancellationToken cancellationToken = default)
    {
        foreach (var service in Services)
        {
            await LookupAsync(service, service.Config!.Dns!, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_loops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task RunAsync(Service service, ServiceDnsConfig dns, TaskCompletionSource firstDone)
    {
        // Off the caller's thread: StartAsync starts every loop before the first lookup's answer.
        await Task.Yield();
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            TimeSpan wait;
            try
            {
                wait = await LookupAsync(service, dns, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A bug or an unexpected failure must not end the loop: the service keeps its endpoints and we try again.
                Log.LookupCrashed(_logger, service.Name, dns.Name, e);
                wait = dns.MinRefresh;
            }
            finally
            {
                firstDone.TrySetResult();
            }

            try
            {
                await Task.Delay(wait, _time, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>One lookup and what follows from it; returns how long to wait before the next.</summary>
    private async Task<TimeSpan> LookupAsync(Service service, ServiceDnsConfig dns, CancellationToken cancellationToken)
    {
        var answer = await _resolver.ResolveAsync(dns, cancellationToken).ConfigureAwait(false);
        _metrics?.CountLookup(service.Name, answer.Result);
        var config = service.Config!;
        switch (answer.Result)
        {
            case DnsLookupResult.Success:
            {
                var endpoints = ServiceRegistry.StaticEndpoints(config);
                endpoints.AddRange(answer.Endpoints);
                var before = service.EndpointCount;
                var removed = _registry.UpdateEndpoints(service, endpoints);
                var after = service.EndpointCount;
                if (removed.Count > 0 || after != before)
                {
                    Log.Updated(_logger, service.Name, answer.Detail, after, removed.Count);
                }

                return Clamp(answer.Ttl, dns);
            }

            case DnsLookupResult.Empty:
            case DnsLookupResult.NxDomain:
            {
                // DNS says there are none: the static endpoints only (maybe none: requests then get 503 no_endpoint).
                var endpoints = ServiceRegistry.StaticEndpoints(config);
                var had = service.EndpointCount;
                var removed = _registry.UpdateEndpoints(service, endpoints, $"DNS: {answer.Detail}");
                if (removed.Count > 0 || had == 0)
                {
                    Log.NoRecords(_logger, service.Name, answer.Detail, removed.Count);
                }

                return dns.MinRefresh;
            }

            default:
            {
                // Keep the last good set. A service that never had an answer says why it is empty.
                if (service.EndpointCount == 0)
                {
                    _registry.UpdateEndpoints(service, ServiceRegistry.StaticEndpoints(config), $"DNS lookup failed: {answer.Detail}");
                }

                Log.LookupFailed(_logger, service.Name, answer.Detail, service.EndpointCount);
                return dns.MinRefresh;
            }
        }
    }

    private static TimeSpan Clamp(TimeSpan ttl, ServiceDnsConfig dns)
        => ttl < dns.MinRefresh ? dns.MinRefresh : ttl > dns.MaxRefresh ? dns.MaxRefresh : ttl;

    private static partial class Log
    {
        [LoggerMessage(EventId = 1501, Level = LogLevel.Information, Message = "Service {Service}: {Detail}; it has {Count} endpoints now ({Removed} removed, draining)")]
        public static partial void Updated(ILogger logger, string service, string detail, int count, int removed);

        [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "Service {Service}: {Detail}; only its static endpoints are left ({Removed} removed)")]
        public static partial void NoRecords(ILogger logger, string service, string detail, int removed);

        [LoggerMessage(EventId = 1503, Level = LogLevel.Warning, Message = "Service {Service}: DNS lookup failed ({Detail}); keeping its {Count} endpoints")]
        public static partial void LookupFailed(ILogger logger, string service, string detail, int count);

        [LoggerMessage(EventId = 1504, Level = LogLevel.Error, Message = "Service {Service}: the DNS lookup of {Name} failed unexpectedly; keeping its endpoints")]
        public static partial void LookupCrashed(ILogger logger, string service, string name, Exception exception);

        [LoggerMessage(EventId = 1505, Level = LogLevel.Warning, Message = "Not every DNS service had its first answer within {WaitMs} ms; starting anyway (they follow when DNS answers)")]
        public static partial void FirstLookupsSlow(ILogger logger, double waitMs);
    }
}

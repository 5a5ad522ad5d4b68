using System.Net;
using DnsClient;
using DnsClient.Protocol;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;

namespace Proxy.Core.Discovery;

/// <summary>What one lookup of a service's DNS name came to; the <c>result</c> tag of <c>proxy_dns_lookups_total</c>.</summary>
public enum DnsLookupResult
{
    /// <summary>Records found: the endpoints are replaced by them.</summary>
    Success,

    /// <summary>The name exists but has no records of the type asked (NOERROR, no answer).</summary>
    Empty,

    /// <summary>The name does not exist (NXDOMAIN).</summary>
    NxDomain,

    /// <summary>No answer within the timeout from any server.</summary>
    Timeout,

    /// <summary>Any other failure (SERVFAIL, REFUSED, a malformed answer, no usable server): the last endpoints stay.</summary>
    Error,
}

/// <summary>One lookup's outcome: the endpoints found (Success), how long they may be kept, and a phrase for logs and answers.</summary>
public sealed record DnsAnswer(DnsLookupResult Result, IReadOnlyList<WeightedAddress> Endpoints, TimeSpan Ttl, string Detail)
{
    public static string ResultName(DnsLookupResult result) => result switch
    {
        DnsLookupResult.Success => "success",
        DnsLookupResult.Empty => "empty",
        DnsLookupResult.NxDomain => "nxdomain",
        DnsLookupResult.Timeout => "timeout",
        _ => "error",
    };
}

/// <summary>Looks up a service's <c>dns</c> name; the seam <see cref="DnsDiscovery"/> is tested through.</summary>
public interface IDnsResolver
{
    Task<DnsAnswer> ResolveAsync(ServiceDnsConfig dns, CancellationToken cancellationToken);
}

/// <summary>
/// <see cref="IDnsResolver"/> over the DnsClient package: no cache (every refresh asks the server, so TTLs are the
/// server's), the configured servers in order (the next on timeout or error), TCP when an answer is truncated.
/// <list type="bullet">
/// <item>ip: A and AAAA asked together; a success needs both to answer (an error in either keeps the last endpoints,
/// so a flaky AAAA server cannot take the IPv4 endpoints away); records of either family make a success.</item>
/// <item>srv: the records of the lowest priority (RFC 2782); each target's addresses from the answer's additional
/// section, else asked (A and AAAA); weights scaled into 1..1000 (a weight of 0 counts as 1); a repeated
/// target:port adds its weights.</item>
/// </list>
/// The TTL is the smallest of all records used.
/// </summary>
public sealed class DnsClientResolver : IDnsResolver
{
    private readonly LookupClient _client;

    public DnsClientResolver(DnsConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var options = config.Servers.Count == 0 ? new LookupClientOptions() : new LookupClientOptions(config.Servers.ToArray());
        options.UseCache = false;
        options.Timeout = config.Timeout;
        options.Retries = 0;
        options.ThrowDnsErrors = false;
        options.ContinueOnDnsError = true;
        options.UseRandomNameServer = false;
        options.UseTcpFallback = true;
        _client = new LookupClient(options);
    }

    /// <summary>The servers asked (the configured ones, or the system's).</summary>
    public IReadOnlyCollection<NameServer> Servers => _client.NameServers;

    public async Task<DnsAnswer> ResolveAsync(ServiceDnsConfig dns, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dns);
        try
        {
            return dns.Type == DnsRecordKind.Srv
                ? await ResolveSrvAsync(dns.Name, cancellationToken).ConfigureAwait(false)
                : await ResolveAddressesAsync(dns.Name, dns.Type, dns.Port, cancellationToken).ConfigureAwait(false);
        }
        catch (DnsResponseException e)
        {
            return Failure(e);
        }
    }

    private async Task<DnsAnswer> ResolveAddressesAsync(string name, DnsRecordKind kind, int port, CancellationToken cancellationToken)
    {
        var (answer, addresses) = await LookupAddressesAsync(name, kind, cancellationToken).ConfigureAwait(false);
        if (answer.Result != DnsLookupResult.Success)
        {
            return answer;
        }

        var endpoints = new List<WeightedAddress>(addresses.Count);
        foreach (var a in addresses)
        {
            endpoints.Add(new WeightedAddress(new UpstreamAddress(new IPEndPoint(a, port))));
        }

        return answer with { Endpoints = endpoints, Detail = Describe(name, kind, endpoints.Count) };
    }

    /// <summary>A, AAAA or both; Success with the addresses, or why not.</summary>
    private async Task<(DnsAnswer Answer, List<IPAddress> Addresses)> LookupAddressesAsync(string name, DnsRecordKind kind, CancellationToken cancellationToken)
    {
        var ask = kind switch
        {
            DnsRecordKind.A => [QueryType.A],
            DnsRecordKind.Aaaa => [QueryType.AAAA],
            _ => new[] { QueryType.A, QueryType.AAAA },
        };
        var queries = new Task<IDnsQueryResponse>[ask.Length];
        for (var i = 0; i < ask.Length; i++)
        {
            queries[i] = _client.QueryAsync(name, ask[i], QueryClass.IN, cancellationToken);
        }

        var addresses = new List<IPAddress>();
        var ttl = int.MaxValue;
        DnsAnswer? worst = null;
        var nx = 0;
        for (var i = 0; i < queries.Length; i++)
        {
            var response = await queries[i].ConfigureAwait(false);
            if (Check(response, name, ask[i]) is { } problem)
            {
                if (problem.Result == DnsLookupResult.NxDomain)
                {
                    nx++;
                }

                // An error or timeout outranks "no such name / no records" for the lookup as a whole.
                if (worst is null || problem.Result is DnsLookupResult.Error or DnsLookupResult.Timeout)
                {
                    worst = problem;
                }

                continue;
            }

            foreach (var record in response.Answers)
            {
                var address = record switch
                {
                    ARecord a => a.Address,
                    AaaaRecord aaaa => aaaa.Address,
                    _ => null,
                };
                if (address is null)
                {
                    continue;
                }

                ttl = Math.Min(ttl, record.TimeToLive);
                if (!addresses.Contains(address))
                {
                    addresses.Add(address);
                }
            }
        }

        if (worst is { Result: DnsLookupResult.Error or DnsLookupResult.Timeout })
        {
            return (worst, addresses);
        }

        if (addresses.Count == 0)
        {
            return (nx == queries.Length
                ? new DnsAnswer(DnsLookupResult.NxDomain, [], TimeSpan.Zero, $"{name} does not exist (NXDOMAIN)")
                : new DnsAnswer(DnsLookupResult.Empty, [], TimeSpan.Zero, $"{name} has no {KindName(kind)} records"), addresses);
        }

        return (new DnsAnswer(DnsLookupResult.Success, [], TimeSpan.FromSeconds(ttl), ""), addresses);
    }

    private async Task<DnsAnswer> ResolveSrvAsync(string name, CancellationToken cancellationToken)
    {
        var response = await _client.QueryAsync(name, QueryType.SRV, QueryClass.IN, cancellationToken).ConfigureAwait(false);
        if (Check(response, name, QueryType.SRV) is { } problem)
        {
            return problem;
        }

        var records = response.Answers.SrvRecords().ToList();
        if (records.Count == 0)
        {
            return new DnsAnswer(DnsLookupResult.Empty, [], TimeSpan.Zero, $"{name} has no SRV records");
        }

        // RFC 2782: only the lowest priority value is used while it has targets.
        var priority = records.Min(static r => r.Priority);
        var ttl = int.MaxValue;
        var maxWeight = 1;
        var byEndpoint = new List<(IPEndPoint EndPoint, long Weight)>();
        foreach (var srv in records)
        {
            if (srv.Priority != priority)
            {
                continue;
            }

            ttl = Math.Min(ttl, srv.TimeToLive);
            var target = srv.Target.Value.TrimEnd('.');
            if (target.Length == 0)
            {
                // "." as target: the service is decidedly not available at this name (RFC 2782).
                continue;
            }

            var addresses = new List<IPAddress>();
            foreach (var extra in response.Additionals)
            {
                if (extra is AddressRecord a && string.Equals(extra.DomainName.Value.TrimEnd('.'), target, StringComparison.OrdinalIgnoreCase))
                {
                    addresses.Add(a.Address);
                    ttl = Math.Min(ttl, extra.TimeToLive);
                }
            }

            if (addresses.Count == 0)
            {
                var (answer, found) = await LookupAddressesAsync(target, DnsRecordKind.Ip, cancellationToken).ConfigureAwait(false);
                if (answer.Result is DnsLookupResult.Error or DnsLookupResult.Timeout)
                {
                    // A target we cannot resolve now: keep the last endpoints rather than lose that target's.
                    return answer with { Detail = $"SRV target {target} of {name}: {answer.Detail}" };
                }

                if (answer.Result == DnsLookupResult.Success)
                {
                    ttl = Math.Min(ttl, (int)Math.Min(int.MaxValue, answer.Ttl.TotalSeconds));
                }

                addresses = found;
            }

            foreach (var address in addresses)
            {
                var ep = new IPEndPoint(address, srv.Port);
                var index = byEndpoint.FindIndex(e => e.EndPoint.Equals(ep));
                long weight = Math.Max((int)srv.Weight, 1);
                if (index >= 0)
                {
                    weight += byEndpoint[index].Weight;
                    byEndpoint[index] = (ep, weight);
                }
                else
                {
                    byEndpoint.Add((ep, weight));
                }

                maxWeight = (int)Math.Max(maxWeight, Math.Min(weight, int.MaxValue));
            }
        }

        if (byEndpoint.Count == 0)
        {
            return new DnsAnswer(DnsLookupResult.Empty, [], TimeSpan.Zero, $"the SRV targets of {name} have no addresses");
        }

        var endpoints = new List<WeightedAddress>(byEndpoint.Count);
        foreach (var (ep, weight) in byEndpoint)
        {
            // Endpoint weights are 1..1000 (ConfigLoader.MaxWeight); SRV's go to 65535: scale down when needed.
            var scaled = maxWeight <= ConfigLoader.MaxWeight ? weight : Math.Max(1, weight * ConfigLoader.MaxWeight / maxWeight);
            endpoints.Add(new WeightedAddress(new UpstreamAddress(ep), (int)scaled));
        }

        return new DnsAnswer(DnsLookupResult.Success, endpoints, TimeSpan.FromSeconds(ttl), Describe(name, DnsRecordKind.Srv, endpoints.Count));
    }

    /// <summary>Null when the response answers the question (records or not), else what went wrong.</summary>
    private static DnsAnswer? Check(IDnsQueryResponse response, string name, QueryType type)
    {
        if (!response.HasError)
        {
            return null;
        }

        var code = (DnsResponseCode)response.Header.ResponseCode;
        return code switch
        {
            DnsResponseCode.NotExistentDomain => new DnsAnswer(DnsLookupResult.NxDomain, [], TimeSpan.Zero, $"{name} does not exist (NXDOMAIN)"),
            DnsResponseCode.ConnectionTimeout => new DnsAnswer(DnsLookupResult.Timeout, [], TimeSpan.Zero, $"no DNS server answered the {type} query for {name} in time"),
            _ => new DnsAnswer(DnsLookupResult.Error, [], TimeSpan.Zero, $"the {type} query for {name} failed: {response.ErrorMessage}"),
        };
    }

    private static DnsAnswer Failure(DnsResponseException e)
        => e.Code == DnsResponseCode.ConnectionTimeout
            ? new DnsAnswer(DnsLookupResult.Timeout, [], TimeSpan.Zero, $"no DNS server answered in time ({e.Message})")
            : new DnsAnswer(DnsLookupResult.Error, [], TimeSpan.Zero, e.Message);

    private static string KindName(DnsRecordKind kind) => kind switch
    {
        DnsRecordKind.A => "A",
        DnsRecordKind.Aaaa => "AAAA",
        DnsRecordKind.Srv => "SRV",
        _ => "A or AAAA",
    };

    private static string Describe(string name, DnsRecordKind kind, int count)
        => $"{name} ({KindName(kind)}) gave {count} endpoint{(count == 1 ? "" : "s")}";
}

using System.Net;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;

namespace Proxy.Bench.Micro;

/// <summary>
/// The per-request cost of choosing an endpoint, for each balancer over 16 weighted endpoints, and of
/// the request lifecycle the load-aware ones need. Expected: 0 B allocated for every benchmark.
/// </summary>
[MemoryDiagnoser]
public class BalancerBenchmarks
{
    private ILoadBalancer _roundRobin = null!;
    private ILoadBalancer _random = null!;
    private ILoadBalancer _leastRequest = null!;
    private ILoadBalancer _peakEwma = null!;
    private ILoadBalancer _ringHash = null!;
    private BalancerContext _keyed;
    private IPAddress _client = null!;

    [Params(false, true)]
    public bool Weighted { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var addresses = new WeightedAddress[16];
        for (var i = 0; i < addresses.Length; i++)
        {
            var ep = new IPEndPoint(new IPAddress([10, 0, 0, (byte)(i + 1)]), 8080);
            addresses[i] = new WeightedAddress(new UpstreamAddress(ep), Weighted ? 1 + (i % 4) : 1);
        }

        _roundRobin = LoadBalancers.Create(BalancerKind.RoundRobin, addresses);
        _random = LoadBalancers.Create(BalancerKind.Random, addresses);
        _leastRequest = LoadBalancers.Create(BalancerKind.LeastRequest, addresses);
        _peakEwma = LoadBalancers.Create(BalancerKind.PeakEwma, addresses);
        _ringHash = LoadBalancers.Create(BalancerKind.RingHash, addresses);
        _keyed = BalancerContext.WithHash(0x0123456789abcdefUL);
        _client = IPAddress.Parse("192.0.2.44");

        // Give the peak-EWMA endpoints samples so Pick takes the decay path, not the "unsampled" shortcut.
        for (var i = 0; i < _peakEwma.Endpoints.Count; i++)
        {
            var e = _peakEwma.Endpoints[i];
            e.OnRequestEnd(e.OnRequestStart(), success: true);
        }
    }

    [Benchmark(Baseline = true)]
    public Endpoint RoundRobin() => _roundRobin.Pick(BalancerContext.None);

    [Benchmark]
    public Endpoint Random() => _random.Pick(BalancerContext.None);

    [Benchmark]
    public Endpoint LeastRequest() => _leastRequest.Pick(BalancerContext.None);

    [Benchmark]
    public Endpoint PeakEwma() => _peakEwma.Pick(BalancerContext.None);

    [Benchmark]
    public Endpoint RingHash() => _ringHash.Pick(in _keyed);

    [Benchmark]
    public Endpoint RingHashSourceIp()
    {
        var context = BalancerContext.WithSourceAddress(_client);
        return _ringHash.Pick(in context);
    }

    /// <summary>Pick plus OnRequestStart/OnRequestEnd: what an HTTP request pays for peak-EWMA in all.</summary>
    [Benchmark]
    public Endpoint PeakEwmaRequestLifecycle()
    {
        var e = _peakEwma.Pick(BalancerContext.None);
        e.OnRequestEnd(e.OnRequestStart(), success: true);
        return e;
    }
}

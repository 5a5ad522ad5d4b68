using Proxy.Core.Configuration;
using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Balancing;
using Proxy.Http.Http1;
using Proxy.Http.Routing;

namespace Proxy.Bench.Micro;

/// <summary>
/// The per-request cost of finding a route in a realistic table (20 routes of assorted kinds before the
/// one that matches), of picking a split destination, and of a route's rewritten target and redirect Location.
/// Expected: 0 B allocated for every benchmark, including the regex ones (their char copy lives on the stack for
/// paths up to 256 bytes).
/// </summary>
[MemoryDiagnoser]
public class RouteMatchBenchmarks
{
    private RouteTable _table = null!;
    private Http1RequestHead _exactHead = null!;
    private Http1RequestHead _prefixHeaderQueryHead = null!;
    private Http1RequestHead _regexHead = null!;
    private Http1RequestHead _fallThroughHead = null!;
    private RouteAction _split = null!;
    private IRandomSource _random = null!;
    private RouteAction _rewrite = null!;
    private RouteAction _redirect = null!;
    private Http1RequestHead _rewriteHead = null!;
    private Http1RequestHead _redirectHead = null!;
    private readonly byte[] _target = new byte[512];
    private readonly ArrayBufferWriter<byte> _location = new(512);

    [GlobalSetup]
    public void Setup()
    {
        var json = new StringBuilder("[");
        for (var i = 0; i < 20; i++)
        {
            // Routes that are checked and rejected first: other hosts, paths and headers.
            json.Append($$"""{ "name": "filler{{i}}", "match": { "hosts": ["svc{{i}}.test", "*.svc{{i}}.test"], "path": { "prefix": "/filler{{i}}" }, "headers": [{ "name": "x-f{{i}}", "present": true }] }, "action": { "service": "f{{i}}" } },""");
        }

        json.Append("""
            { "name": "exact", "match": { "hosts": ["api.example.com"], "path": { "exact": "/health" }, "methods": ["GET"] }, "action": { "service": "health" } },
            { "name": "ab", "match": { "hosts": ["*.example.com"], "path": { "segmentPrefix": "/api" }, "headers": [{ "name": "x-variant", "exact": "b" }], "query": [{ "name": "debug", "present": true }] },
              "action": { "service": "api", "subset": "v2" } },
            { "name": "regex", "match": { "path": { "regex": "/users/[0-9]+/orders" }, "headers": [{ "name": "x-user", "regex": "u[0-9]+" }] }, "action": { "service": "orders" } },
            { "name": "rewrite", "match": { "path": { "segmentPrefix": "/legacy" } }, "action": { "service": "api", "rewrite": { "pathPrefix": "/v2", "host": "api.internal" } } },
            { "name": "redirect", "match": { "path": { "prefix": "/old/" } }, "action": { "redirect": { "scheme": "https", "pathPrefix": "/new/", "status": 301 } } },
            { "name": "canary", "match": { "path": { "prefix": "/shop" } },
              "action": { "split": [{ "service": "shop", "subset": "v1", "weight": 90 }, { "service": "shop", "subset": "v2", "weight": 10 }] } }
            ]
            """);
        var result = RouteConfigReader.ReadJson(json.ToString());
        if (!result.Ok)
        {
            throw new InvalidOperationException(string.Join("\n", result.Errors));
        }

        _table = new RouteTable(result.Routes!);
        _exactHead = Parse("GET /health HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n");
        _prefixHeaderQueryHead = Parse("GET /api/items?page=2&debug HTTP/1.1\r\nHost: www.example.com:8080\r\nX-Variant: b\r\nAccept: */*\r\n\r\n");
        _regexHead = Parse("GET /users/12345/orders HTTP/1.1\r\nHost: shop.test\r\nX-User: u12345\r\n\r\n");
        _fallThroughHead = Parse("GET /nothing HTTP/1.1\r\nHost: none.test\r\n\r\n");
        _table.TryMatch(Parse("GET /shop HTTP/1.1\r\nHost: h\r\n\r\n"), out var canary);
        _split = canary!.Action;
        _random = SharedRandomSource.Instance;
        _rewriteHead = Parse("GET /legacy/items/42?expand=owner HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        _table.TryMatch(_rewriteHead, out var rewrite);
        _rewrite = rewrite!.Action;
        _redirectHead = Parse("GET /old/items/42?expand=owner HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n");
        _table.TryMatch(_redirectHead, out var redirect);
        _redirect = redirect!.Action;
    }

    private static Http1RequestHead Parse(string text)
    {
        var head = new Http1RequestHead();
        if (!new Http1RequestHeadParser().TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text)), head, out _))
        {
            throw new InvalidOperationException("incomplete head");
        }

        return head;
    }

    [Benchmark(Baseline = true)]
    public bool ExactHostAndPath() => _table.TryMatch(_exactHead, out _);

    [Benchmark]
    public bool WildcardSegmentPrefixHeaderQuery() => _table.TryMatch(_prefixHeaderQueryHead, out _);

    [Benchmark]
    public bool RegexPathAndHeader() => _table.TryMatch(_regexHead, out _);

    [Benchmark]
    public bool NoRoute() => _table.TryMatch(_fallThroughHead, out _);

    [Benchmark]
    public RouteDestination SplitPick() => _split.PickDestination(_random);

    /// <summary>The target a rewriting route sends upstream (prefix replaced, query kept).</summary>
    [Benchmark]
    public int RewriteTarget() => _rewrite.WriteUpstreamTarget(_rewriteHead.Target, _rewriteHead.TargetForm, _target);

    /// <summary>A redirect's Location for a request.</summary>
    [Benchmark]
    public int RedirectLocation()
    {
        _location.ResetWrittenCount();
        _redirect.Redirect!.WriteLocation(_location, new RequestView(_redirectHead), clientTls: false);
        return _location.WrittenCount;
    }
}

using BenchmarkDotNet.Attributes;
using Proxy.Core.Configuration;
using Proxy.Http.Http1;

namespace Proxy.Bench.Micro;

/// <summary>
/// The per-request cost of path normalization (<c>--http-path-normalization</c>, default base): a normal path is
/// recognised by one scan; one with a dot segment or an escape is rewritten into a reused buffer. Expected: 0 B.
/// </summary>
[MemoryDiagnoser]
public class PathNormalizeBenchmarks
{
    private static readonly byte[] Plain = "/api/v1/users/12345/orders?page=2&sort=desc"u8.ToArray();
    private static readonly byte[] Dotted = "/static/app.min.js?v=3"u8.ToArray();
    private static readonly byte[] Attack = "/public/%2e%2e/api/./v1//users/../admin?x=1"u8.ToArray();
    private readonly byte[] _destination = new byte[256];

    [Benchmark(Baseline = true)]
    public PathNormalizeResult PlainPath() => Http1PathNormalizer.Normalize(Plain, Http1TargetForm.Origin, PathNormalization.Base, _destination, out _);

    [Benchmark]
    public PathNormalizeResult PathWithADot() => Http1PathNormalizer.Normalize(Dotted, Http1TargetForm.Origin, PathNormalization.Base, _destination, out _);

    [Benchmark]
    public PathNormalizeResult DotSegmentsAndEscapes() => Http1PathNormalizer.Normalize(Attack, Http1TargetForm.Origin, PathNormalization.MergeSlashes, _destination, out _);
}

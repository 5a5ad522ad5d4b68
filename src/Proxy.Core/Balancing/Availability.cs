using System.Runtime.CompilerServices;

namespace Proxy.Core.Balancing;

/// <summary>
/// How the balancers skip endpoints that are ejected (outlier detection) or unhealthy (active health check), without
/// allocating: the usual pick is kept when it is available (one volatile read); otherwise a few more weighted draws,
/// then a scan from a random start. When no endpoint is available the balancer falls back to its usual pick over all
/// of them (Envoy's panic mode: better to try a doubtful endpoint than to fail every request); the HTTP and TCP stages
/// notice that the pick is unavailable and count it (<c>proxy_balancer_panic_total</c>).
/// </summary>
internal static class Availability
{
    private const int ExtraDraws = 4;

    /// <summary>True when at least one endpoint of the span is available.</summary>
    public static bool Any(ReadOnlySpan<Endpoint> endpoints)
    {
        foreach (var e in endpoints)
        {
            if (e.IsAvailable)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first available endpoint at or after <paramref name="start"/> (wrapping), or -1.</summary>
    public static int NextFrom(ReadOnlySpan<Endpoint> endpoints, int start)
    {
        for (var k = 0; k < endpoints.Length; k++)
        {
            var i = start + k;
            if (i >= endpoints.Length)
            {
                i -= endpoints.Length;
            }

            if (endpoints[i].IsAvailable)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>
    /// An available endpoint in place of <paramref name="unavailable"/>: weighted draws first (exact proportions when
    /// few endpoints are out), then a scan from a random start; <paramref name="unavailable"/> itself when none is
    /// available (panic).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Endpoint Replace(EndpointSet set, IRandomSource random, Endpoint unavailable)
    {
        for (var k = 0; k < ExtraDraws; k++)
        {
            var e = set[set.SampleWeighted(random)];
            if (e.IsAvailable)
            {
                return e;
            }
        }

        var i = NextFrom(set.AsSpan(), random.Next(set.Count));
        return i < 0 ? unavailable : set[i];
    }
}

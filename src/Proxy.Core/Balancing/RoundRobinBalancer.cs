namespace Proxy.Core.Balancing;

/// <summary>
/// Smooth weighted round-robin. The order is nginx's smooth WRR (weights 5,1,1 give a a b a c a a: the
/// heavy endpoint's turns are spread out, not bunched), computed once per snapshot into a schedule that
/// picks walk with one interlocked increment: lock-free, no per-pick state beyond a counter. Unavailable endpoints
/// (ejected, unhealthy) lose their turns to the next ones in the schedule.
/// </summary>
/// <remarks>
/// Weights are divided by their greatest common divisor first; a total weight above
/// <see cref="BalancerOptions.MaxScheduleLength"/> is scaled down to fit (each weight at least 1), which
/// rounds the proportions slightly. Picks start at the first endpoint.
/// </remarks>
public sealed class RoundRobinBalancer : ILoadBalancer
{
    private readonly EndpointSet _set;
    private readonly Endpoint[] _schedule;
    private uint _next;

    public RoundRobinBalancer(EndpointSet endpoints, BalancerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        _set = endpoints;
        _schedule = BuildSchedule(endpoints, (options ?? BalancerOptions.Default).MaxScheduleLength);
    }

    public EndpointSet Endpoints => _set;

    /// <summary>The length of one full round (the sum of the reduced weights).</summary>
    public int ScheduleLength => _schedule.Length;

    public Endpoint Pick(in BalancerContext context)
    {
        // Unsigned wrap-around keeps the index valid after 2^32 picks; the modulo is over the schedule,
        // so a wrap restarts mid-round at worst once per 2^32 picks.
        var i = Interlocked.Increment(ref _next) - 1;
        var e = _schedule[i % (uint)_schedule.Length];
        return e.IsAvailable ? e : NextAvailable(e);
    }

    /// <summary>
    /// The pick was unavailable (ejected, unhealthy): take the following turns of the schedule (advancing the shared
    /// counter, so the skipped turn is not given twice to the next endpoint) until one is available; the first pick
    /// when none is (panic).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private Endpoint NextAvailable(Endpoint first)
    {
        if (!Availability.Any(_set.AsSpan()))
        {
            return first;
        }

        for (var k = 0; k < _schedule.Length; k++)
        {
            var i = Interlocked.Increment(ref _next) - 1;
            var e = _schedule[i % (uint)_schedule.Length];
            if (e.IsAvailable)
            {
                return e;
            }
        }

        return first;
    }

    private static Endpoint[] BuildSchedule(EndpointSet set, int maxLength)
    {
        var n = set.Count;
        var weights = new long[n];
        long gcd = 0;
        for (var i = 0; i < n; i++)
        {
            weights[i] = set[i].Weight;
            gcd = Gcd(gcd, weights[i]);
        }

        long total = 0;
        for (var i = 0; i < n; i++)
        {
            weights[i] /= gcd;
            total += weights[i];
        }

        if (total > maxLength)
        {
            var scaled = 0L;
            for (var i = 0; i < n; i++)
            {
                weights[i] = Math.Max(1, weights[i] * maxLength / total);
                scaled += weights[i];
            }

            total = scaled;
        }

        // nginx smooth WRR: every step each endpoint gains its weight, the richest is picked and pays
        // the total. Ties go to the lower index, so equal weights give plain 0, 1, 2, ... order.
        var schedule = new Endpoint[total];
        var current = new long[n];
        for (var step = 0; step < schedule.Length; step++)
        {
            var best = 0;
            for (var i = 0; i < n; i++)
            {
                current[i] += weights[i];
                if (current[i] > current[best])
                {
                    best = i;
                }
            }

            current[best] -= total;
            schedule[step] = set[best];
        }

        return schedule;
    }

    private static long Gcd(long a, long b)
    {
        while (b != 0)
        {
            (a, b) = (b, a % b);
        }

        return a;
    }
}

using Proxy.Core.Balancing;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Balancing;

public sealed class BalancerHotPathTests
{
    public static TheoryData<BalancerKind> Kinds => [.. Enum.GetValues<BalancerKind>()];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Pick_WithRequestLifecycle_AllocatesNothing(BalancerKind kind)
    {
        // The defaults: thread-safe shared random, system clock; weighted so the weighted paths run.
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(5, 1, 2, 3, 4, 5));
        var keyed = BalancerContext.WithHash(12345);
        Run(balancer, keyed, 1000);

        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(balancer, keyed, 10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    private static void Run(ILoadBalancer balancer, BalancerContext keyed, int n)
    {
        for (var i = 0; i < n; i++)
        {
            var e = (i & 1) == 0 ? balancer.Pick(in keyed) : balancer.Pick(BalancerContext.None);
            var token = e.OnRequestStart();
            e.OnRequestEnd(token, success: (i & 3) != 0);
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Pick_ParallelPicksAndRequests_CountersReturnToZero(BalancerKind kind)
    {
        var balancer = LoadBalancers.Create(kind, Endpoints.Addresses(4, 1, 1, 2, 3));
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var picks = new long[4];
        var workers = new Task[4];
        for (var w = 0; w < workers.Length; w++)
        {
            var worker = w;
            workers[w] = Task.Run(async () =>
            {
                await start.Task.WaitAsync(TestTimeouts.Short);
                var context = BalancerContext.WithHash((ulong)worker * 0x9e3779b97f4a7c15UL);
                for (var i = 0; i < 20_000; i++)
                {
                    var e = balancer.Pick(in context);
                    var token = e.OnRequestStart();
                    Interlocked.Increment(ref picks[Endpoints.IndexOf(balancer.Endpoints, e)]);
                    if ((i & 7) == 0)
                    {
                        e.EndWithoutSample();
                    }
                    else
                    {
                        e.OnRequestEnd(token, success: true);
                    }
                }
            });
        }

        start.SetResult();
        await Task.WhenAll(workers).WaitAsync(TestTimeouts.Bulk);

        Assert.Equal(4 * 20_000, picks.Sum());
        for (var i = 0; i < balancer.Endpoints.Count; i++)
        {
            Assert.Equal(0, balancer.Endpoints[i].InFlight);
        }
    }
}

using Proxy.Core.Transport;

namespace Proxy.Core.Tests.Transport;

public sealed class SpinLatchTests
{
    [Fact]
    public async Task EnterScope_TwoThreadsContending_NoIncrementIsLost()
    {
        // A plain read-modify-write under the latch, from two threads at once: any overlap of two sections loses counts.
        var latch = new SpinLatch();
        var count = 0L;
        const int PerThread = 200_000;
        var start = new ManualResetEventSlim();
        var workers = Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(() =>
        {
            start.Wait();
            for (var i = 0; i < PerThread; i++)
            {
                using (latch.EnterScope())
                {
                    var seen = count;
                    Thread.SpinWait(1);
                    count = seen + 1;
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        start.Set();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2L * PerThread, count);
    }

    [Fact]
    public async Task Enter_WhileHeldElsewhere_WaitsUntilExit()
    {
        // The holder is its own thread (an await in the test could move the test to another one).
        var latch = new SpinLatch();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim();
        var holder = Task.Factory.StartNew(() =>
        {
            using (latch.EnterScope())
            {
                held.SetResult();
                Assert.True(release.Wait(TimeSpan.FromSeconds(10)));
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await held.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var other = Task.Run(() =>
        {
            using (latch.EnterScope())
            {
                entered.SetResult();
            }
        });

        // Still out after a moment of trying: it can only get in after the holder leaves.
        await Assert.ThrowsAsync<TimeoutException>(() => entered.Task.WaitAsync(TimeSpan.FromMilliseconds(200)));
        release.Set();
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.WhenAll(holder, other).WaitAsync(TimeSpan.FromSeconds(10));
    }

#if DEBUG
    [Fact]
    public void Enter_AgainOnTheHoldingThread_ThrowsInDebugBuilds()
    {
        // Release builds would spin for ever: the HTTP/2 classes rely on Debug test runs to find re-entry.
        var latch = new SpinLatch();
        using (latch.EnterScope())
        {
            Assert.Throws<LockRecursionException>(() => latch.Enter());
        }

        // Left properly: enterable again.
        using (latch.EnterScope())
        {
        }
    }

    [Fact]
    public async Task Exit_ByAThreadThatDoesNotHoldIt_ThrowsInDebugBuilds()
    {
        var latch = new SpinLatch();
        var error = await Task.Factory.StartNew(() =>
        {
            // Entered and left on this thread; the wrong-thread exit in between runs on another one.
            latch.Enter();
            var wrong = Task.Run(() => Record.Exception(latch.Exit));
            var result = wrong.WaitAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
            latch.Exit();
            return result;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.IsType<SynchronizationLockException>(error);
    }
#endif
}

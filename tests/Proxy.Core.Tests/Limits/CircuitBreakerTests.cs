using System.Net;
using Microsoft.AspNetCore.Connections;
using Proxy.Core.Addresses;
using Proxy.Core.Configuration;
using Proxy.Core.Limits;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Limits;

public sealed class CircuitBreakerTests
{
    private static CircuitBreaker Breaker(int connections = 2, int pending = 2, int requests = 2, int retries = 1)
        => new("orders", new CircuitBreakersConfig { MaxConnections = connections, MaxPendingRequests = pending, MaxRequests = requests, MaxRetries = retries });

    [Fact]
    public void TryEnterRequest_AtTheLimit_RefusedAndCountedUntilASlotIsGivenBack()
    {
        var breaker = Breaker(requests: 2);
        var refusals = new List<CircuitBreakerLimit>();
        breaker.OnOverflow = (_, limit) => refusals.Add(limit);
        Assert.True(breaker.TryEnterRequest());
        Assert.True(breaker.TryEnterRequest());
        Assert.False(breaker.TryEnterRequest());
        Assert.Equal(2, breaker.Requests);
        breaker.ExitRequest();
        Assert.True(breaker.TryEnterRequest());
        Assert.Equal([CircuitBreakerLimit.MaxRequests], refusals);
    }

    [Fact]
    public void MaxRetriesZero_NoRetryEver()
    {
        var breaker = Breaker(retries: 0);
        Assert.False(breaker.TryEnterRetry());
        Assert.Equal(0, breaker.Retries);
    }

    [Fact]
    public void PendingFull_TrueOnlyAtTheLimit()
    {
        var breaker = Breaker(pending: 1);
        Assert.False(breaker.PendingFull());
        breaker.EnterPending();
        Assert.True(breaker.PendingFull());
        breaker.ExitPending();
        Assert.False(breaker.PendingFull());
    }

    [Fact]
    public void Describe_NamesServiceLimitAndValue()
        => Assert.Equal("service orders is at its circuit breaker limit maxConnections (2 upstream connections open)", Breaker().Describe(CircuitBreakerLimit.MaxConnections));

    [Fact]
    public void ConcurrentEnters_NeverAdmitMoreThanTheLimit()
    {
        var breaker = Breaker(requests: 8);
        var admitted = 0;
        var peak = 0;
        Parallel.For(0, 10_000, _ =>
        {
            if (breaker.TryEnterRequest())
            {
                var now = Interlocked.Increment(ref admitted);
                InterlockedMax(ref peak, now);
                Interlocked.Decrement(ref admitted);
                breaker.ExitRequest();
            }
        });
        Assert.InRange(peak, 1, 8);
        Assert.Equal(0, breaker.Requests);
    }

    [Fact]
    public async Task Connector_CountsConnectionsUntilDisposed_OverTheLimitFailsWithoutDialling()
    {
        var breaker = Breaker(connections: 2);
        var inner = new FakeConnector();
        var address = new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9001));
        var other = new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9002));
        var connector = new CircuitBreakingConnector(inner, a => a == address ? breaker : null);

        var first = await connector.TryConnectAsync(address, CancellationToken.None);
        var second = await connector.TryConnectAsync(address, CancellationToken.None);
        var third = await connector.TryConnectAsync(address, CancellationToken.None);
        Assert.True(first.IsSuccess && second.IsSuccess);
        Assert.False(third.IsSuccess);
        Assert.Equal(ConnectFailureCause.Overflow, third.Failure.Cause);
        Assert.Equal("overflow", third.Failure.CauseTag);
        Assert.Contains("maxConnections", third.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(2, inner.Dialled);

        // Another service's endpoint is not counted.
        Assert.True((await connector.TryConnectAsync(other, CancellationToken.None)).IsSuccess);
        Assert.Equal(2, breaker.Connections);

        // Disposed (twice: counted once): the slot comes back.
        await first.Connection!.DisposeAsync();
        await first.Connection.DisposeAsync();
        Assert.Equal(1, breaker.Connections);
        Assert.True(inner.Made[0].Disposed);
        Assert.True((await connector.TryConnectAsync(address, CancellationToken.None)).IsSuccess);
        Assert.Equal(2, breaker.Connections);
    }

    [Fact]
    public async Task Connector_FailedConnect_GivesTheSlotBack()
    {
        var breaker = Breaker(connections: 1);
        var connector = new CircuitBreakingConnector(new FakeConnector { Fail = true }, _ => breaker);
        var result = await connector.TryConnectAsync(new UpstreamAddress(new IPEndPoint(IPAddress.Loopback, 9001)), CancellationToken.None);
        Assert.Equal(ConnectFailureCause.Refused, result.Failure.Cause);
        Assert.Equal(0, breaker.Connections);
    }

    [Fact]
    public void ConnectionClosed_WithWaiters_TheSlotGoesToTheOldestStillWaiting()
    {
        var breaker = Breaker(connections: 1);
        var refusals = new List<CircuitBreakerLimit>();
        breaker.OnOverflow = (_, limit) => refusals.Add(limit);
        Assert.True(breaker.TryTakeConnectionSlot());
        Assert.False(breaker.TryTakeConnectionSlot());

        var gone = new SlotWaiter { Declines = true };
        var first = new SlotWaiter();
        var second = new SlotWaiter();
        breaker.EnqueueConnectionWaiter(gone);
        breaker.EnqueueConnectionWaiter(first);
        var secondNode = breaker.EnqueueConnectionWaiter(second);
        Assert.Equal(3, breaker.ConnectionWaiters);

        // The one that stopped waiting declines: the slot passes to the next, never freed in between.
        breaker.ConnectionClosed();
        Assert.Equal((1, 1, 0), (gone.Offers, first.Granted, second.Granted));
        Assert.Equal(1, breaker.Connections);
        Assert.Equal(1, breaker.ConnectionWaiters);

        // A waiter that leaves is not offered anything; with nobody waiting a slot is freed.
        breaker.RemoveConnectionWaiter(secondNode);
        breaker.ConnectionClosed();
        Assert.Equal(0, second.Offers);
        Assert.Equal(0, breaker.Connections);
        Assert.Empty(refusals);
    }

    [Fact]
    public void TryTakeConnectionSlot_WhileOthersWait_Refused_EnqueueWithAFreeSlot_GrantedAtOnce()
    {
        var breaker = Breaker(connections: 2);
        Assert.True(breaker.TryTakeConnectionSlot());
        Assert.True(breaker.TryTakeConnectionSlot());
        var waiter = new SlotWaiter();
        breaker.EnqueueConnectionWaiter(waiter);
        breaker.EnqueueConnectionWaiter(new SlotWaiter());

        // Waiters go first: a newcomer does not take a slot past them.
        breaker.ConnectionClosed();
        Assert.Equal(1, waiter.Granted);
        Assert.False(breaker.TryTakeConnectionSlot());

        // A slot freed while nobody is queued is found by the next waiter when it queues.
        var fresh = Breaker(connections: 1);
        var late = new SlotWaiter();
        fresh.EnqueueConnectionWaiter(late);
        Assert.Equal(1, late.Granted);
        Assert.Equal(0, fresh.ConnectionWaiters);
    }

    [Fact]
    public async Task ConcurrentClosesAndWaiters_EveryWaiterServed_SlotsNeverPastTheLimit()
    {
        var breaker = Breaker(connections: 4);
        var peak = 0;
        var holders = 0;
        var served = 0;
        var workers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < 2_000; i++)
            {
                if (!breaker.TryTakeConnectionSlot())
                {
                    var waiter = new SlotWaiter();
                    var node = breaker.EnqueueConnectionWaiter(waiter);
                    await waiter.Task.WaitAsync(TimeSpan.FromSeconds(10));
                    breaker.RemoveConnectionWaiter(node);
                }

                // The breaker's own count may pass the limit for an instant under a race (a refused increment is undone); holders may not.
                InterlockedMax(ref peak, Interlocked.Increment(ref holders));
                Interlocked.Increment(ref served);
                Interlocked.Decrement(ref holders);
                breaker.ConnectionClosed();
            }
        })).ToArray();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(16_000, served);
        Assert.InRange(peak, 1, 4);
        Assert.Equal(0, breaker.Connections);
        Assert.Equal(0, breaker.ConnectionWaiters);
    }

    private sealed class SlotWaiter : IConnectionSlotWaiter
    {
        private readonly TaskCompletionSource _granted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool Declines { get; init; }

        public int Offers;

        public int Granted;

        public Task Task => _granted.Task;

        public bool TryGrantSlot()
        {
            Offers++;
            if (Declines)
            {
                return false;
            }

            Granted++;
            _granted.SetResult();
            return true;
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    private sealed class FakeConnector : IUpstreamConnector
    {
        public bool Fail { get; init; }

        public int Dialled;

        public List<FakeConnection> Made { get; } = [];

        public ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
        {
            Dialled++;
            if (Fail)
            {
                return ValueTask.FromResult(UpstreamConnectResult.Failed(new ConnectFailure(destination, ConnectFailureCause.Refused, "refused")));
            }

            var connection = new FakeConnection();
            Made.Add(connection);
            return ValueTask.FromResult(UpstreamConnectResult.Success(connection));
        }
    }

    private sealed class FakeConnection : ConnectionContext
    {
        public bool Disposed { get; private set; }

        public override string ConnectionId { get; set; } = "fake";

        public override Microsoft.AspNetCore.Http.Features.IFeatureCollection Features { get; } = new Microsoft.AspNetCore.Http.Features.FeatureCollection();

        public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

        public override System.IO.Pipelines.IDuplexPipe Transport { get; set; } = null!;

        public override async ValueTask DisposeAsync()
        {
            Disposed = true;
            await base.DisposeAsync();
        }
    }
}

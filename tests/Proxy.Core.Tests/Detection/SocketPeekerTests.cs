using Proxy.Core.Detection;
using Proxy.Core.Tests.TestSupport;

namespace Proxy.Core.Tests.Detection;

/// <summary>The portable fallback (polling) instead of the epoll waiter: same tests.</summary>
public sealed class SocketPeekerFallbackTests : SocketPeekerTests
{
    protected override bool UseWaiter => false;
}

/// <summary>
/// <see cref="SocketPeeker"/> over loopback sockets: waits until enough bytes are queued, consumes nothing, and ends on
/// FIN (waiter only), deadline, or a closed socket.
/// </summary>
public class SocketPeekerTests
{
    protected virtual bool UseWaiter => OperatingSystem.IsLinux();

    private SocketPeeker NewPeeker() => new(UseWaiter ? ReadableWaiter.Shared : null);

    private static long Deadline(TimeSpan after) => Environment.TickCount64 + (long)after.TotalMilliseconds;

    private static async Task<(TestListener Listener, System.Net.Sockets.Socket Client, System.Net.Sockets.Socket Accepted)> PairAsync()
    {
        var listener = TestListener.Start();
        var client = await TestSockets.ConnectAsync(listener.EndPoint);
        var accepted = await listener.AcceptAsync();
        return (listener, client, accepted);
    }

    [Fact]
    public async Task PeekAsync_BytesAlreadyQueued_EnoughAtOnceAndNothingConsumed()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var c = client;
        using var a = accepted;
        await client.SendAllAsync("hello world"u8.ToArray());
        var buffer = new byte[64];
        var result = await NewPeeker().PeekAsync(accepted, buffer, 11, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(new PeekResult(PeekOutcome.Enough, 11), result);
        Assert.Equal("hello world"u8.ToArray(), await accepted.ReadExactlyAsync(11));
    }

    [Fact]
    public async Task PeekAsync_MoreBytesArriveLater_WaitsForTheMinimum()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var c = client;
        using var a = accepted;
        await client.SendAllAsync("abc"u8.ToArray());
        var buffer = new byte[64];
        var peek = NewPeeker().PeekAsync(accepted, buffer, 6, Deadline(TestTimeouts.Short)).AsTask();
        Assert.False(peek.IsCompleted);
        await client.SendAllAsync("def"u8.ToArray());
        var result = await peek.WaitAsync(TestTimeouts.Short);
        Assert.Equal(PeekOutcome.Enough, result.Outcome);
        Assert.Equal(6, result.BytesPeeked);
        Assert.Equal("abcdef"u8.ToArray(), buffer[..6]);
    }

    [Fact]
    public async Task PeekAsync_TooFewBytesUntilDeadline_TimedOutWithWhatWasPeeked()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var c = client;
        using var a = accepted;
        await client.SendAllAsync("abc"u8.ToArray());
        var result = await NewPeeker().PeekAsync(accepted, new byte[64], 10, Deadline(TimeSpan.FromMilliseconds(150))).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(new PeekResult(PeekOutcome.TimedOut, 3), result);
    }

    [Fact]
    public async Task PeekAsync_FinBeforeAnyByte_ClientClosed()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var a = accepted;
        client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        client.Dispose();
        var result = await NewPeeker().PeekAsync(accepted, new byte[64], 5, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(PeekOutcome.ClientClosed, result.Outcome);
    }

    [Fact]
    public async Task PeekAsync_FinAfterAPrefix_ClientClosedWithWaiterElseTimeout()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var a = accepted;
        await client.SendAllAsync("abc"u8.ToArray());
        var peek = NewPeeker().PeekAsync(accepted, new byte[64], 10, Deadline(TimeSpan.FromMilliseconds(UseWaiter ? 30_000 : 1_000))).AsTask();
        client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        var result = await peek.WaitAsync(TestTimeouts.Short);

        // The waiter sees the FIN (EPOLLRDHUP); the polling fallback cannot and waits for the deadline.
        Assert.Equal(new PeekResult(UseWaiter ? PeekOutcome.ClientClosed : PeekOutcome.TimedOut, 3), result);
        client.Dispose();
    }

    [Fact]
    public async Task PeekAsync_MinimumAboveBuffer_ClampedToTheBuffer()
    {
        var (listener, client, accepted) = await PairAsync();
        using var l = listener;
        using var c = client;
        using var a = accepted;
        await client.SendAllAsync("abcdefgh"u8.ToArray());
        var result = await NewPeeker().PeekAsync(accepted, new byte[4], 100, Deadline(TestTimeouts.Short)).AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal(new PeekResult(PeekOutcome.Enough, 4), result);
    }
}

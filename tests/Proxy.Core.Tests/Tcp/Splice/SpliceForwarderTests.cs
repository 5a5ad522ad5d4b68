using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Tcp;
using Proxy.Core.Tcp.Splice;

namespace Proxy.Core.Tests.Tcp.Splice;

public sealed class SpliceForwarderTests : IDisposable
{
    private static readonly TimeSpan Timeout = LoopbackConnections.Timeout;
    private static readonly TcpForwardOptions Defaults = new();

    private readonly SpliceForwarder _forwarder = new();

    public void Dispose() => _forwarder.Dispose();

    [Fact]
    public void IsSupported_OnLinux_IsTrue()
    {
        Assert.Equal(OperatingSystem.IsLinux(), _forwarder.IsSupported);
    }

    [Fact]
    public async Task ForwardAsync_100MegabytesEachWayConcurrently_ArrivesByteExact()
    {
        const long size = 100L * 1024 * 1024;
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        var observer = new CountingObserver();

        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, observer, CancellationToken.None).AsTask();
        Task<byte[]> clientSends = Task.Run(() => LoopbackConnections.SendPatternAsync(c.Client, size, seed: 1, shutdownAfter: true));
        Task<byte[]> serverSends = Task.Run(() => LoopbackConnections.SendPatternAsync(c.Server, size, seed: 2, shutdownAfter: true));
        Task<(long Length, byte[] Hash)> serverReceives = Task.Run(() => LoopbackConnections.ReceiveToEndAsync(c.Server));
        Task<(long Length, byte[] Hash)> clientReceives = Task.Run(() => LoopbackConnections.ReceiveToEndAsync(c.Client));

        TcpForwardResult result = await forward.WaitAsync(Timeout);
        (long Length, byte[] Hash) atServer = await serverReceives.WaitAsync(Timeout);
        (long Length, byte[] Hash) atClient = await clientReceives.WaitAsync(Timeout);

        Assert.Equal(size, atServer.Length);
        Assert.Equal(size, atClient.Length);
        Assert.Equal(await clientSends.WaitAsync(Timeout), atServer.Hash);
        Assert.Equal(await serverSends.WaitAsync(Timeout), atClient.Hash);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, size, size), result);
        Assert.Equal(size, observer.ToUpstream);
        Assert.Equal(size, observer.ToDownstream);
        Assert.InRange(observer.Calls, 2, size / 1024); // per splice call, never per byte
    }

    [Fact]
    public async Task ForwardAsync_ClientHalfCloses_ServerReadsToEndThenAnswerArrives()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();

        byte[] request = Encoding.ASCII.GetBytes("question, then FIN");
        await c.Client.SendAsync(request, SocketFlags.None).WaitAsync(Timeout);
        c.Client.Shutdown(SocketShutdown.Send);

        byte[] atServer = await LoopbackConnections.ReceiveAllAsync(c.Server); // ends only if the FIN was passed on
        Assert.Equal(request, atServer);

        byte[] answer = Encoding.ASCII.GetBytes("answer after the client's FIN");
        await c.Server.SendAsync(answer, SocketFlags.None).WaitAsync(Timeout);
        c.Server.Shutdown(SocketShutdown.Send);

        Assert.Equal(answer, await LoopbackConnections.ReceiveAllAsync(c.Client));
        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, request.Length, answer.Length), result);
    }

    [Fact]
    public async Task ForwardAsync_ServerSpeaksFirst_BannerReachesClientAndReplyReachesServer()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        byte[] banner = Encoding.ASCII.GetBytes("220 server speaks first\r\n");
        await c.Server.SendAsync(banner, SocketFlags.None).WaitAsync(Timeout); // already waiting before forwarding starts

        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
        Assert.Equal(banner, await LoopbackConnections.ReceiveExactlyAsync(c.Client, banner.Length));

        byte[] reply = Encoding.ASCII.GetBytes("QUIT\r\n");
        await c.Client.SendAsync(reply, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(reply, await LoopbackConnections.ReceiveExactlyAsync(c.Server, reply.Length));

        c.Server.Shutdown(SocketShutdown.Send);
        c.Client.Shutdown(SocketShutdown.Send);
        Assert.Empty(await LoopbackConnections.ReceiveAllAsync(c.Client));
        Assert.Empty(await LoopbackConnections.ReceiveAllAsync(c.Server));
        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, reply.Length, banner.Length), result);
    }

    [Fact]
    public async Task ForwardAsync_ClientResets_ServerSeesResetAndOutcomeIsDownstreamReset()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
        await c.Client.SendAsync(new byte[] { 1, 2, 3 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 1, 2, 3 }, await LoopbackConnections.ReceiveExactlyAsync(c.Server, 3));

        LoopbackConnections.Reset(c.Client);

        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Server));
        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(TcpForwardOutcome.DownstreamReset, result.Outcome);
        Assert.Equal(3, result.BytesToUpstream);
    }

    [Fact]
    public async Task ForwardAsync_ServerResets_ClientSeesResetAndOutcomeIsUpstreamReset()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
        await c.Server.SendAsync(new byte[] { 9, 8 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 9, 8 }, await LoopbackConnections.ReceiveExactlyAsync(c.Client, 2));

        LoopbackConnections.Reset(c.Server);

        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));
        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(TcpForwardOutcome.UpstreamReset, result.Outcome);
        Assert.Equal(2, result.BytesToDownstream);
    }

    [Fact]
    public async Task ForwardAsync_ServerResetsWhileClientHalfClosed_ClientSeesReset()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
        c.Client.Shutdown(SocketShutdown.Send);
        Assert.Empty(await LoopbackConnections.ReceiveAllAsync(c.Server)); // FIN passed on, that direction is done

        LoopbackConnections.Reset(c.Server); // the only thing left to notice the reset is the idle direction's socket

        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));
        Assert.Equal(TcpForwardOutcome.UpstreamReset, (await forward.WaitAsync(Timeout)).Outcome);
    }

    [Fact]
    public async Task ForwardAsync_NoTrafficForIdleTimeout_BothSidesResetAndOutcomeIsIdleTimeout()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        var idle = TimeSpan.FromSeconds(1);
        var options = new TcpForwardOptions { IdleTimeout = idle };
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, options, null, CancellationToken.None).AsTask();

        // Traffic every 200 ms keeps the session alive well past one timeout.
        Stopwatch sinceLastByte = Stopwatch.StartNew();
        for (int i = 0; i < 8; i++)
        {
            await c.Client.SendAsync(new[] { (byte)i }, SocketFlags.None).WaitAsync(Timeout);
            Assert.Equal(new[] { (byte)i }, await LoopbackConnections.ReceiveExactlyAsync(c.Server, 1));
            sinceLastByte.Restart();
            await Task.Delay(200);
        }

        Assert.False(forward.IsCompleted);
        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.IdleTimeout, 8, 0), result);
        Assert.True(sinceLastByte.Elapsed >= idle - TimeSpan.FromMilliseconds(50), $"ended {sinceLastByte.Elapsed} after the last byte");
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Server));
    }

    [Fact]
    public async Task ForwardAsync_Cancelled_BothSidesResetAndOutcomeIsAborted()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        using var cts = new CancellationTokenSource();
        Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, cts.Token).AsTask();
        await c.Client.SendAsync(new byte[] { 7 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 7 }, await LoopbackConnections.ReceiveExactlyAsync(c.Server, 1));

        await cts.CancelAsync();

        TcpForwardResult result = await forward.WaitAsync(Timeout);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Aborted, 1, 0), result);
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Server));
    }

    [Fact]
    public async Task ForwardAsync_AlreadyCancelled_ReturnsAbortedAndClosesSockets()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        TcpForwardResult result = await _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, new CancellationToken(canceled: true)).AsTask().WaitAsync(Timeout);

        Assert.Equal(TcpForwardOutcome.Aborted, result.Outcome);
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));
    }

    [Fact]
    public async Task Dispose_WithRunningSession_SessionEndsAborted()
    {
        using LoopbackConnections c = await LoopbackConnections.CreateAsync();
        var forwarder = new SpliceForwarder();
        Task<TcpForwardResult> forward = forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
        await c.Client.SendAsync(new byte[] { 1 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 1 }, await LoopbackConnections.ReceiveExactlyAsync(c.Server, 1));

        forwarder.Dispose();

        Assert.Equal(TcpForwardOutcome.Aborted, (await forward.WaitAsync(Timeout)).Outcome);
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(c.Client));

        using LoopbackConnections later = await LoopbackConnections.CreateAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await forwarder.ForwardAsync(later.ProxyDownstream, later.ProxyUpstream, Defaults, null, CancellationToken.None)).WaitAsync(Timeout);
    }
    [Fact]
    public async Task ForwardAsync_SequentialSessionsReusingPooledPipes_EachByteExact()
    {
        for (int i = 0; i < 5; i++)
        {
            using LoopbackConnections c = await LoopbackConnections.CreateAsync();
            Task<TcpForwardResult> forward = _forwarder.ForwardAsync(c.ProxyDownstream, c.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();
            long size = (i + 1) * 1024 * 1024; // large enough to grow the pipes that the next session inherits
            Task<byte[]> sent = LoopbackConnections.SendPatternAsync(c.Client, size, seed: i, shutdownAfter: true);
            (long length, byte[] hash) = await LoopbackConnections.ReceiveToEndAsync(c.Server);
            c.Server.Shutdown(SocketShutdown.Send);

            Assert.Equal(size, length);
            Assert.Equal(await sent.WaitAsync(Timeout), hash);
            Assert.Empty(await LoopbackConnections.ReceiveAllAsync(c.Client));
            Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, size, 0), await forward.WaitAsync(Timeout));
        }
    }

    [Fact]
    public async Task ForwardAsync_ObserverThrows_SessionAbortedAndOtherSessionsUnaffected()
    {
        using LoopbackConnections bad = await LoopbackConnections.CreateAsync();
        using LoopbackConnections good = await LoopbackConnections.CreateAsync();
        Task<TcpForwardResult> failing = _forwarder.ForwardAsync(bad.ProxyDownstream, bad.ProxyUpstream, Defaults, new ThrowingObserver(), CancellationToken.None).AsTask();
        Task<TcpForwardResult> healthy = _forwarder.ForwardAsync(good.ProxyDownstream, good.ProxyUpstream, Defaults, null, CancellationToken.None).AsTask();

        await bad.Client.SendAsync(new byte[] { 1 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(TcpForwardOutcome.Aborted, (await failing.WaitAsync(Timeout)).Outcome);
        Assert.Equal(SocketError.ConnectionReset, await LoopbackConnections.ReceiveUntilErrorAsync(bad.Client));

        await good.Client.SendAsync(new byte[] { 2 }, SocketFlags.None).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 2 }, await LoopbackConnections.ReceiveExactlyAsync(good.Server, 1));
        good.Client.Shutdown(SocketShutdown.Send);
        good.Server.Shutdown(SocketShutdown.Send);
        Assert.Equal(new TcpForwardResult(TcpForwardOutcome.Completed, 1, 0), await healthy.WaitAsync(Timeout));
    }

    private sealed class ThrowingObserver : IForwardObserver
    {
        public void OnBytesToUpstream(int count) => throw new InvalidOperationException("observer failure");

        public void OnBytesToDownstream(int count) => throw new InvalidOperationException("observer failure");
    }
}

using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Tests.Transport;

/// <summary>
/// <see cref="IoUringBatch"/> on its own, over real loopback sockets. Each test is synchronous: the ring is created
/// with <c>SINGLE_ISSUER</c>, so it is used only by the thread that made it, as on an event loop.
/// </summary>
public sealed unsafe class IoUringBatchTests
{
    private const int EAGAIN = 11;
    private const int EBADF = 9;

    [SkippableFact]
    public void Issue_ReceiveAndSendInOneCall_ResultsAreThoseOfThePlainCalls()
    {
        using var ring = CreateRing(8);
        using var pair = SocketPair.Create();
        pair.Right.Send("hello"u8);

        var received = GC.AllocateArray<byte>(64, pinned: true);
        var other = GC.AllocateArray<byte>(64, pinned: true);
        var outgoing = GC.AllocateArray<byte>(3, pinned: true);
        "abc"u8.CopyTo(outgoing);
        var receive = new RecordingOperation("receive");
        var send = new RecordingOperation("send");
        var empty = new RecordingOperation("empty");
        fixed (byte* r = received)
        fixed (byte* o = outgoing)
        fixed (byte* x = other)
        {
            Assert.True(ring.TryQueueReceive(pair.LeftFd, r, received.Length, receive));
            Assert.True(ring.TryQueueSend(pair.LeftFd, o, outgoing.Length, 0, send));
            Assert.True(ring.TryQueueReceive(pair.RightFd, x, other.Length, empty));
            Assert.Equal(3, ring.Queued);

            Assert.Equal(3, ring.Issue());
        }

        Assert.Equal(0, ring.Queued);
        Assert.Equal(0, ring.InFlight);
        Assert.Equal(5, receive.Result);
        Assert.Equal("hello"u8.ToArray(), received[..5]);
        Assert.Equal(3, send.Result);

        // The right side's receive was issued before the left side's send reached it, or after: either it found the
        // three bytes or it did not wait for them (MSG_DONTWAIT: -EAGAIN, never a blocked ring).
        Assert.True(empty.Result is 3 or -EAGAIN, $"unexpected result {empty.Result}");
        if (empty.Result == 3)
        {
            Assert.Equal("abc"u8.ToArray(), other[..3]);
        }
        else
        {
            var rest = new byte[16];
            Assert.Equal(3, pair.Right.Receive(rest));
            Assert.Equal("abc"u8.ToArray(), rest[..3]);
        }
    }

    [SkippableFact]
    public void Issue_ReceiveAtEndOfStream_ReturnsZero_AndOnANonSocket_ReturnsTheErrno()
    {
        using var ring = CreateRing(4);
        using var pair = SocketPair.Create();
        pair.Right.Shutdown(SocketShutdown.Send);
        var buffer = GC.AllocateArray<byte>(16, pinned: true);
        var eof = new RecordingOperation("eof");
        var bad = new RecordingOperation("bad");
        fixed (byte* b = buffer)
        {
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, eof));
            Assert.True(ring.TryQueueReceive(-1, b, buffer.Length, bad));
            Assert.Equal(2, ring.Issue());
        }

        Assert.Equal(0, eof.Result);
        Assert.Equal(-EBADF, bad.Result);
    }

    [SkippableFact]
    public void TryQueue_WhenTheRingIsFull_IsRefused_AndAcceptsAgainAfterIssue()
    {
        using var ring = CreateRing(4);
        using var pair = SocketPair.Create();
        var buffer = GC.AllocateArray<byte>(16, pinned: true);
        var operations = Enumerable.Range(0, 5).Select(i => new RecordingOperation($"op{i}")).ToArray();
        fixed (byte* b = buffer)
        {
            for (var i = 0; i < 4; i++)
            {
                Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, operations[i]));
            }

            Assert.False(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, operations[4]));
            Assert.Equal(4, ring.Issue());
            Assert.All(operations[..4], o => Assert.Equal(-EAGAIN, o.Result));
            Assert.Null(operations[4].Result);

            // Many rounds of two calls (two, so they go through the ring: a lone call is made directly): the ring's
            // slots wrap around and every completion still finds its own operation.
            var other = GC.AllocateArray<byte>(16, pinned: true);
            fixed (byte* x = other)
            {
                for (var round = 0; round < 10; round++)
                {
                    pair.Right.Send(new byte[] { (byte)round });
                    var op = new RecordingOperation($"round{round}");
                    var idle = new RecordingOperation($"idle{round}");
                    Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, op));
                    Assert.True(ring.TryQueueReceive(pair.RightFd, x, other.Length, idle));
                    Assert.Equal(2, ring.Issue());
                    Assert.Equal(1, op.Result);
                    Assert.Equal(round, buffer[0]);
                    Assert.Equal(-EAGAIN, idle.Result);
                }
            }
        }
    }

    [SkippableFact]
    public void Issue_OperationWhoseSocketIsGone_IsNotIssued_AndCompletesWithEbadf()
    {
        using var ring = CreateRing(4);
        using var pair = SocketPair.Create();
        pair.Right.Send("xyz"u8);
        var buffer = GC.AllocateArray<byte>(16, pinned: true);
        var other = GC.AllocateArray<byte>(16, pinned: true);
        var gone = new RecordingOperation("gone", acquires: false);
        var live = new RecordingOperation("live");
        fixed (byte* b = buffer)
        fixed (byte* x = other)
        {
            // With a second call beside it, so the batch goes through the ring (the gone one becomes a no-op entry);
            // then alone, made directly.
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, gone));
            Assert.True(ring.TryQueueReceive(pair.RightFd, x, other.Length, live));
            Assert.Equal(2, ring.Issue());
            Assert.Equal(-EBADF, gone.Result);
            Assert.Equal(-EAGAIN, live.Result);

            var goneAlone = new RecordingOperation("gone alone", acquires: false);
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, goneAlone));
            Assert.Equal(1, ring.Issue());
            Assert.Equal(-EBADF, goneAlone.Result);
        }

        // The receive became a no-op: the bytes are still waiting in the socket.
        Assert.Equal(3, pair.Left.Receive(new byte[16]));
    }

    [SkippableFact]
    public void Issue_ReleasesEveryOperationBeforeAnyCompletes_AndContinuationsQueueForTheNextIssue()
    {
        using var ring = CreateRing(8);
        using var pair = SocketPair.Create();
        var buffer = GC.AllocateArray<byte>(16, pinned: true);
        var events = new List<string>();
        var follow = new RecordingOperation("follow", events);
        fixed (byte* b = buffer)
        {
            var pointer = b;
            var first = new RecordingOperation("first", events);
            var second = new RecordingOperation("second", events)
            {
                OnComplete = () => Assert.True(ring.TryQueueReceive(pair.LeftFd, pointer, 16, follow)),
            };
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, first));
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, second));

            Assert.Equal(2, ring.Issue());
            Assert.Equal(
                ["acquire first", "acquire second", "release first", "release second", "complete first", "complete second"],
                events);

            // Queued by a completion: waits for the next Issue, which the loop makes while anything is queued.
            Assert.Equal(1, ring.Queued);
            Assert.Null(follow.Result);
            Assert.Equal(1, ring.Issue());
        }

        Assert.Equal(-EAGAIN, follow.Result);
    }

    [SkippableFact]
    public void Issue_OneOperationAtATime_EachKindReturnsWhatThePlainCallWould()
    {
        // A lone operation skips the submission (a plain system call costs less than one entry through the ring):
        // each kind, one at a time, with what the ring would have returned.
        using var ring = CreateRing(4);
        using var pair = SocketPair.Create();
        var buffer = GC.AllocateArray<byte>(16, pinned: true);
        fixed (byte* b = buffer)
        {
            var empty = new RecordingOperation("empty");
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, empty));
            Assert.Equal(1, ring.Issue());
            Assert.Equal(-EAGAIN, empty.Result);

            pair.Right.Send("hi"u8);
            var receive = new RecordingOperation("receive");
            Assert.True(ring.TryQueueReceive(pair.LeftFd, b, buffer.Length, receive));
            Assert.Equal(1, ring.Issue());
            Assert.Equal(2, receive.Result);
            Assert.Equal("hi"u8.ToArray(), buffer[..2]);

            var send = new RecordingOperation("send");
            Assert.True(ring.TryQueueSend(pair.LeftFd, b, 2, 0, send));
            Assert.Equal(1, ring.Issue());
            Assert.Equal(2, send.Result);

            var bad = new RecordingOperation("bad");
            Assert.True(ring.TryQueueReceive(-1, b, buffer.Length, bad));
            Assert.Equal(1, ring.Issue());
            Assert.Equal(-EBADF, bad.Result);
            Assert.Equal(0, ring.Queued);
        }

        var echoed = new byte[16];
        Assert.Equal(2, pair.Right.Receive(echoed));
        Assert.Equal("hi"u8.ToArray(), echoed[..2]);
    }

    [Fact]
    public void TryCreate_WithAnInvalidSize_ReturnsNullInsteadOfThrowing()
    {
        // io_uring_setup refuses 0 entries (EINVAL): the same path as a kernel or policy that refuses io_uring.
        Assert.Null(IoUringBatch.TryCreate(0));
    }

    private static IoUringBatch CreateRing(uint entries)
    {
        var ring = IoUringBatch.TryCreate(entries);
        if (ring is null)
        {
            // CI's machines have io_uring; elsewhere (a container that blocks it) the proxy falls back, and so do we.
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, "io_uring is not available on this CI machine.");
            Skip.If(true, "io_uring is not available here.");
        }

        return ring!;
    }

    private sealed class RecordingOperation(string name, List<string>? events = null, bool acquires = true) : IoUringOperation
    {
        public int? Result { get; private set; }

        public Action? OnComplete { get; init; }

        public override bool Acquire()
        {
            events?.Add($"acquire {name}");
            return acquires;
        }

        public override void Release() => events?.Add($"release {name}");

        public override void Complete(int result)
        {
            Assert.Null(Result);
            Result = result;
            events?.Add($"complete {name}");
            OnComplete?.Invoke();
        }
    }

    private sealed class SocketPair : IDisposable
    {
        private SocketPair(Socket left, Socket right)
        {
            Left = left;
            Right = right;
        }

        public Socket Left { get; }

        public Socket Right { get; }

        public int LeftFd => (int)Left.Handle;

        public int RightFd => (int)Right.Handle;

        public static SocketPair Create()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var left = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            left.Connect(listener.LocalEndPoint!);
            var right = listener.Accept();
            right.NoDelay = true;
            right.ReceiveTimeout = 10_000;
            left.ReceiveTimeout = 10_000;
            return new SocketPair(left, right);
        }

        public void Dispose()
        {
            Left.Dispose();
            Right.Dispose();
        }
    }
}

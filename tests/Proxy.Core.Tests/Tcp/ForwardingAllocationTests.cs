using System.Net;
using System.Net.Sockets;
using Proxy.Core.Addresses;
using Proxy.Core.Tcp;
using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;

namespace Proxy.Core.Tests.Tcp;

[CollectionDefinition(nameof(AllocationMeasurement), DisableParallelization = true)]
public sealed class AllocationMeasurement;

/// <summary>
/// Whole-process allocation while bytes flow client -> our listener -> PipeForwarder -> our connector
/// -> upstream. Runs alone (no parallel tests) and the test's own peers use blocking, non-allocating
/// socket calls, so what is measured is the transport and the forwarder.
/// </summary>
[Collection(nameof(AllocationMeasurement))]
public sealed class ForwardingAllocationTests
{
    [Fact]
    public async Task Forwarding_SteadyStateRoundTrips_AllocateNothingPerOperation()
    {
        using var factory = new SocketTransportFactory();
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var connector = new UpstreamConnector();

        // The peers stay in blocking mode (synchronous Connect/Accept, never an async call): .NET emulates
        // blocking calls on a socket that went async, and that emulation allocates, which would pollute the measure.
        using var upstreamListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        upstreamListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        upstreamListener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        client.Connect(listener.EndPoint);
        await using var downstream = (await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Short))!;
        var connect = await connector.TryConnectAsync(new UpstreamAddress((IPEndPoint)upstreamListener.LocalEndPoint!), CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Short);
        await using var upstreamConnection = connect.Connection!;
        upstreamListener.ReceiveTimeout = 10_000;
        using var upstream = upstreamListener.Accept();
        upstream.ReceiveTimeout = 10_000;
        upstream.SendTimeout = 10_000;

        var forward = new PipeForwarder().ForwardAsync(downstream.Transport, upstreamConnection.Transport, new TcpForwardOptions(), null, CancellationToken.None).AsTask();

        // Ping-pong on two dedicated threads: 1 KiB up, 1 byte back, so every chunk is its own receive and send.
        const int Warmup = 500;
        const int Measured = 10_000;
        long before = 0;
        var request = new byte[1024];
        // A peer thread's socket error (e.g. a receive timeout) is recorded, not thrown: an exception escaping a raw
        // thread would crash the whole test host instead of failing this test.
        string? peerError = null;
        var upstreamThread = new Thread(() =>
        {
            var buffer = new byte[1024];
            var ack = new byte[1];
            try
            {
                for (var i = 0; i < Warmup + Measured; i++)
                {
                    var got = 0;
                    while (got < buffer.Length)
                    {
                        got += upstream.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                    }

                    upstream.Send(ack);
                }
            }
            catch (SocketException ex)
            {
                peerError = "upstream: " + ex.Message;
            }
        });
        upstreamThread.Start();

        // The client side blocks too, so it gets its own thread: this test method may be resumed on the transport's
        // event loop (an accept or connect completes there), and blocking that thread would stall the forwarding.
        long allocated = -1;
        var clientThread = new Thread(() =>
        {
            var ackBuffer = new byte[1];
            try
            {
                for (var i = 0; i < Warmup + Measured; i++)
                {
                    if (i == Warmup)
                    {
                        before = GC.GetTotalAllocatedBytes(precise: true);
                    }

                    client.Send(request);
                    if (client.Receive(ackBuffer) != 1)
                    {
                        peerError = "client: EOF while waiting for the ack";
                        return;
                    }
                }

                allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            }
            catch (SocketException ex)
            {
                peerError = "client: " + ex.Message;
            }
        });
        clientThread.Start();
        await Task.Run(() => Assert.True(clientThread.Join(TestTimeouts.Bulk) && upstreamThread.Join(TestTimeouts.Short))).WaitAsync(TestTimeouts.Bulk);
        Assert.True(peerError is null, peerError);
        Assert.True(allocated >= 0);

        // 10000 round trips = 40000 socket operations in the proxy (+ as many pipe reads and flushes). Even one
        // smallest object (24 bytes) per round trip would be 240 KB. Measured: 0-2 KB with inline completions,
        // up to ~75 KB without (thread-pool bookkeeping as worker threads come and go, not per operation).
        Assert.True(allocated < 200 * 1024, $"{allocated} bytes allocated during {Measured} proxied round trips");

        client.Shutdown(SocketShutdown.Send);
        upstream.Shutdown(SocketShutdown.Send);
        Assert.Equal(TcpForwardOutcome.Completed, (await forward.WaitAsync(TestTimeouts.Short)).Outcome);
    }
}

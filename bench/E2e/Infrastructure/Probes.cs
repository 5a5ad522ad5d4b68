using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// Polls a starting peer: an HTTP readiness endpoint, or the first byte proxied from a server-speaks-first
/// target. Polling is every millisecond, so the resolution of start-up times is about 1 ms.
/// </summary>
internal static class Probes
{
    /// <summary>Time from <paramref name="startTimestamp"/> until <paramref name="endPoint"/> answers 200 to GET <paramref name="path"/>.</summary>
    public static async Task<TimeSpan> WaitForHttp200Async(
        IPEndPoint endPoint, string path, long startTimestamp, ChildProcess process, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var request = Encoding.ASCII.GetBytes("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        var buffer = new byte[512];
        var lastStatus = "no connection";
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (process.HasExited)
            {
                throw new E2eException($"no 200 from {path}: {await process.DescribeExitAsync()}");
            }

            if (Stopwatch.GetElapsedTime(startTimestamp) > timeout)
            {
                throw new E2eException($"{process.Name}: {endPoint}{path} did not answer 200 within {timeout.TotalSeconds:0} s (last: {lastStatus}); last output:\n{process.RecentOutput}");
            }

            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(2));
                await socket.ConnectAsync(endPoint, attempt.Token);
                await socket.SendAsync(request, SocketFlags.None, attempt.Token);
                var length = 0;
                while (length < 12)
                {
                    var read = await socket.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, attempt.Token);
                    if (read == 0)
                    {
                        break;
                    }

                    length += read;
                }

                // "HTTP/1.1 200"
                if (length >= 12 && buffer.AsSpan(9, 3).SequenceEqual("200"u8))
                {
                    return Stopwatch.GetElapsedTime(startTimestamp);
                }

                lastStatus = Encoding.ASCII.GetString(buffer, 0, Math.Min(length, 12));
            }
            catch (SocketException ex)
            {
                lastStatus = ex.SocketErrorCode.ToString();
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                lastStatus = "timeout";
            }

            await Task.Delay(1, cancellationToken);
        }
    }

    /// <summary>
    /// Time from <paramref name="startTimestamp"/> until a connection to <paramref name="endPoint"/> delivers a byte
    /// (the target speaks first). Refused or closed connections are retried every millisecond.
    /// </summary>
    public static async Task<TimeSpan> WaitForFirstByteAsync(
        IPEndPoint endPoint, long startTimestamp, ChildProcess process, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var buffer = new byte[16];
        var lastStatus = "no connection";
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (process.HasExited)
            {
                throw new E2eException($"no proxied byte: {await process.DescribeExitAsync()}");
            }

            if (Stopwatch.GetElapsedTime(startTimestamp) > timeout)
            {
                throw new E2eException($"{process.Name}: no byte through {endPoint} within {timeout.TotalSeconds:0} s (last: {lastStatus}); last output:\n{process.RecentOutput}");
            }

            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(2));
                await socket.ConnectAsync(endPoint, attempt.Token);
                if (await socket.ReceiveAsync(buffer, SocketFlags.None, attempt.Token) > 0)
                {
                    return Stopwatch.GetElapsedTime(startTimestamp);
                }

                lastStatus = "closed without data";
            }
            catch (SocketException ex)
            {
                lastStatus = ex.SocketErrorCode.ToString();
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                lastStatus = "timeout";
            }

            await Task.Delay(1, cancellationToken);
        }
    }
}

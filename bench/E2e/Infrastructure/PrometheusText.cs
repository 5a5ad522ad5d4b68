using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>Reads single values out of a Prometheus text exposition (the sidecar's admin /metrics).</summary>
internal static class PrometheusText
{
    /// <summary>The sidecar's process-wide allocation counter (GC.GetTotalAllocatedBytes).</summary>
    public const string AllocatedBytes = "proxy_process_allocated_bytes";

    /// <summary>Requests the sidecar's HTTP forwarder served, over every label set.</summary>
    public const string HttpRequests = "proxy_http_requests";

    /// <summary>
    /// The sum of every sample of metric <paramref name="name"/> (also accepted with the <c>_total</c> suffix that
    /// counters get), over all label sets; null when there is no such sample.
    /// </summary>
    public static double? TryGetValue(string text, string name)
    {
        double? sum = null;
        foreach (var rawLine in text.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#' || !line.StartsWith(name, StringComparison.Ordinal))
            {
                continue;
            }

            var rest = line.AsSpan(name.Length);
            if (rest.StartsWith("_total"))
            {
                rest = rest["_total".Length..];
            }

            if (rest.Length == 0 || (rest[0] != ' ' && rest[0] != '{'))
            {
                continue; // another metric sharing the prefix
            }

            if (rest[0] == '{')
            {
                var close = rest.IndexOf('}');
                if (close < 0)
                {
                    continue;
                }

                rest = rest[(close + 1)..];
            }

            // "value" or "value timestamp"
            rest = rest.Trim();
            var space = rest.IndexOf(' ');
            var valueText = space < 0 ? rest : rest[..space];
            if (double.TryParse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                sum = (sum ?? 0) + value;
            }
        }

        return sum;
    }

    /// <summary>
    /// GET <paramref name="path"/> from <paramref name="endPoint"/> (HTTP/1.1, Connection: close) and returns the body;
    /// connection failures, a 5 s timeout and non-200 answers become <see cref="E2eException"/>.
    /// </summary>
    public static async Task<string> FetchAsync(IPEndPoint endPoint, string path, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        string text;
        try
        {
            text = await ReadResponseAsync(endPoint, path, timeout.Token);
        }
        catch (SocketException ex)
        {
            throw new E2eException($"GET {endPoint}{path}: {ex.SocketErrorCode}", ex);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new E2eException($"GET {endPoint}{path}: no complete answer within 5 s", ex);
        }

        if (!text.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) && !text.StartsWith("HTTP/1.0 200", StringComparison.Ordinal))
        {
            var firstLine = text.Split('\n')[0].Trim();
            throw new E2eException($"GET {endPoint}{path}: {(firstLine.Length == 0 ? "no response" : firstLine)}");
        }

        var bodyStart = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        return bodyStart < 0 ? string.Empty : text[(bodyStart + 4)..];
    }

    private static async Task<string> ReadResponseAsync(IPEndPoint endPoint, string path, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint, cancellationToken);
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {endPoint}\r\nConnection: close\r\n\r\n"), SocketFlags.None, cancellationToken);
        using var response = new MemoryStream();
        var buffer = new byte[16384];
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                break;
            }

            response.Write(buffer, 0, read);
        }

        return Encoding.UTF8.GetString(response.GetBuffer(), 0, (int)response.Length);
    }
}

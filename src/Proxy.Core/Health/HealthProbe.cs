using System.Net;
using System.Net.Sockets;
using System.Text;
using Proxy.Core.Configuration;

namespace Proxy.Core.Health;

/// <summary>
/// One active health check of one endpoint, over a connection of its own (never a pooled one, so a check says what a
/// new connection would find): TCP checks pass when the connect succeeds; HTTP checks send
/// <c>GET path HTTP/1.1</c> with <c>Connection: close</c> and pass when the status line carries an expected status.
/// The whole check (connect, request, status line) is bounded by the check's timeout.
/// </summary>
public sealed class HealthProbe
{
    private readonly HealthCheckConfig _config;
    private readonly TimeProvider _time;
    private readonly byte[] _request;

    public HealthProbe(HealthCheckConfig config, string host, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        _config = config;
        _time = time ?? TimeProvider.System;
        _request = Encoding.ASCII.GetBytes($"GET {config.Path} HTTP/1.1\r\nHost: {config.Host ?? host}\r\nUser-Agent: proxy-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    }

    /// <summary>Checks <paramref name="endPoint"/>: healthy, or not with what went wrong. Throws only when <paramref name="stop"/> fires.</summary>
    public async Task<(bool Healthy, string? Detail)> CheckAsync(IPEndPoint endPoint, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        using var timeout = new CancellationTokenSource(_config.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, timeout.Token);
        using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endPoint, linked.Token).ConfigureAwait(false);
            if (_config.Type == HealthCheckType.Tcp)
            {
                return (true, null);
            }

            await socket.SendAsync(_request, SocketFlags.None, linked.Token).ConfigureAwait(false);

            // "HTTP/1.1 200" is 12 bytes; read until they are all here (or the peer closes).
            var buffer = new byte[64];
            var length = 0;
            while (length < 12)
            {
                var read = await socket.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, linked.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return (false, length == 0 ? "closed without an answer" : "closed in the middle of the status line");
                }

                length += read;
            }

            if (!TryParseStatus(buffer.AsSpan(0, length), out var status))
            {
                return (false, "answered something that is not an HTTP/1.x status line");
            }

            return _config.IsExpected(status) ? (true, null) : (false, $"answered status {status}");
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            return (false, $"no answer within the {ValueParsers.FormatDuration(_config.Timeout)} timeout");
        }
        catch (SocketException e)
        {
            return (false, e.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "connection refused",
                SocketError.ConnectionReset => "connection reset",
                SocketError.HostUnreachable or SocketError.NetworkUnreachable => "unreachable",
                _ => e.Message,
            });
        }
    }

    /// <summary>The status of an <c>HTTP/1.x NNN</c> status line start.</summary>
    internal static bool TryParseStatus(ReadOnlySpan<byte> line, out int status)
    {
        status = 0;
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || line[8] != (byte)' ')
        {
            return false;
        }

        for (var i = 9; i < 12; i++)
        {
            var d = line[i] - '0';
            if ((uint)d > 9)
            {
                return false;
            }

            status = (status * 10) + d;
        }

        return status >= 100;
    }
}

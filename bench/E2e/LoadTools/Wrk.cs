using System.Globalization;
using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.LoadTools;

/// <summary>
/// One wrk run: one thread (<c>-t1</c>), <paramref name="Connections"/> keep-alive connections (<c>-c</c>), or a new
/// connection per request when <paramref name="ConnectionClose"/> (<c>-H 'Connection: close'</c>).
/// </summary>
internal sealed record WrkRequest(IPEndPoint Target, TimeSpan Duration, int Connections, bool ConnectionClose, string Path = "/") : ILoadRequest
{
    /// <summary>The wrk command line (without the executable), one argument per item.</summary>
    public IReadOnlyList<string> Arguments()
    {
        List<string> arguments =
        [
            "-t1",
            "-c", Connections.ToString(CultureInfo.InvariantCulture),
            "-d", Duration.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s",
            "--latency",
            "--timeout", "5s",
        ];
        if (ConnectionClose)
        {
            arguments.AddRange(["-H", "Connection: close"]);
        }

        arguments.Add($"http://{Target}{Path}");
        return arguments;
    }
}

/// <summary>wrk's socket error counters ("Socket errors: connect 0, read 0, write 0, timeout 0").</summary>
internal readonly record struct WrkSocketErrors(long Connect, long Read, long Write, long Timeout)
{
    public long Total => Connect + Read + Write + Timeout;
}

/// <summary>
/// What wrk printed: requests completed, elapsed seconds, req/s, the latency distribution (microseconds; p50, p75,
/// p90, p99 from <c>--latency</c>), socket errors and responses outside 2xx/3xx.
/// </summary>
internal sealed record WrkResult(
    long Requests,
    double Seconds,
    double RequestsPerSecond,
    double? P50Microseconds,
    double? P75Microseconds,
    double? P90Microseconds,
    double? P99Microseconds,
    WrkSocketErrors SocketErrors,
    long Non2xx3xx,
    string Raw)
{
    /// <summary>Null when the run is usable; otherwise why not (any socket error, any non-2xx/3xx response, no requests).</summary>
    public string? InvalidReason
    {
        get
        {
            var reasons = new List<string>();
            if (Requests <= 0)
            {
                reasons.Add("no requests completed");
            }

            if (SocketErrors.Total > 0)
            {
                var e = SocketErrors;
                reasons.Add(string.Create(CultureInfo.InvariantCulture, $"socket errors: connect {e.Connect}, read {e.Read}, write {e.Write}, timeout {e.Timeout}"));
            }

            if (Non2xx3xx > 0)
            {
                reasons.Add(string.Create(CultureInfo.InvariantCulture, $"{Non2xx3xx} non-2xx/3xx responses"));
            }

            return reasons.Count == 0 ? null : string.Join("; ", reasons);
        }
    }

    public bool IsValid => InvalidReason is null;
}

/// <summary>The wrk client (Debian package wrk 4.1). Output is parsed by <see cref="WrkOutput.Parse"/>.</summary>
internal sealed class WrkClient
{
    private readonly string _executable;

    public WrkClient(string executable) => _executable = executable;

    public static ToolRequirement Requirement { get; } = new("wrk", "wrk");

    public string Name => "wrk";

    /// <summary>Runs wrk to completion; throws <see cref="E2eException"/> when it fails or prints no summary.</summary>
    public async Task<WrkResult> RunAsync(WrkRequest request, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(_executable, request.Arguments(), request.Duration + TimeSpan.FromSeconds(20), cancellationToken);
        if (result.ExitCode != 0)
        {
            throw new E2eException($"wrk exited with code {result.ExitCode}:\n{result.RecentOutput}");
        }

        return WrkOutput.Parse(result.StandardOutput);
    }
}

/// <summary>Parser of wrk's text summary (with <c>--latency</c>).</summary>
internal static class WrkOutput
{
    /// <summary>
    /// Reads the summary. Required: "N requests in T, X read" and "Requests/sec: R". Optional: the latency
    /// distribution, "Socket errors: ..." and "Non-2xx or 3xx responses: N" (wrk prints the last two only when non-zero).
    /// </summary>
    public static WrkResult Parse(string output)
    {
        long? requests = null;
        double? seconds = null;
        double? rate = null;
        double? p50 = null, p75 = null, p90 = null, p99 = null;
        var errors = default(WrkSocketErrors);
        long non2xx = 0;
        var inDistribution = false;
        foreach (var rawLine in output.Split('\n'))
        {
            var line = rawLine.Trim();
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith("Latency Distribution", StringComparison.Ordinal))
            {
                inDistribution = true;
                continue;
            }

            if (inDistribution)
            {
                // "50%  312.00us"
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 2 && parts[0].EndsWith('%'))
                {
                    var value = ParseDuration(parts[1]);
                    switch (parts[0])
                    {
                        case "50%":
                            p50 = value;
                            break;
                        case "75%":
                            p75 = value;
                            break;
                        case "90%":
                            p90 = value;
                            break;
                        case "99%":
                            p99 = value;
                            break;
                    }

                    continue;
                }

                inDistribution = false;
            }

            if (line.Contains(" requests in ", StringComparison.Ordinal))
            {
                // "412345 requests in 2.00s, 55.44MB read"
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                requests = ParseLong(parts[0], line);
                seconds = ParseDuration(parts[3].TrimEnd(',')) / 1e6;
            }
            else if (line.StartsWith("Requests/sec:", StringComparison.Ordinal))
            {
                rate = ParseDouble(line["Requests/sec:".Length..].Trim(), line);
            }
            else if (line.StartsWith("Socket errors:", StringComparison.Ordinal))
            {
                // "Socket errors: connect 0, read 12, write 0, timeout 3"
                long connect = 0, read = 0, write = 0, timeout = 0;
                foreach (var item in line["Socket errors:".Length..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    var pair = item.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (pair.Length != 2)
                    {
                        throw new E2eException($"wrk: cannot read socket errors '{line}'");
                    }

                    var count = ParseLong(pair[1], line);
                    switch (pair[0])
                    {
                        case "connect":
                            connect = count;
                            break;
                        case "read":
                            read = count;
                            break;
                        case "write":
                            write = count;
                            break;
                        case "timeout":
                            timeout = count;
                            break;
                        default:
                            throw new E2eException($"wrk: unknown socket error kind '{pair[0]}' in '{line}'");
                    }
                }

                errors = new WrkSocketErrors(connect, read, write, timeout);
            }
            else if (line.StartsWith("Non-2xx or 3xx responses:", StringComparison.Ordinal))
            {
                non2xx = ParseLong(line["Non-2xx or 3xx responses:".Length..].Trim(), line);
            }
        }

        if (requests is null || seconds is null || rate is null)
        {
            var head = output.Length > 400 ? output[..400] : output;
            throw new E2eException($"wrk printed no summary (\"N requests in T\" and \"Requests/sec\"):\n{head}");
        }

        return new WrkResult(requests.Value, seconds.Value, rate.Value, p50, p75, p90, p99, errors, non2xx, output);
    }

    /// <summary>A wrk duration ("812.00us", "1.23ms", "2.00s", "1.50m", "1.00h") in microseconds.</summary>
    public static double ParseDuration(string text)
    {
        (string Suffix, double Scale)[] units = [("us", 1), ("ms", 1e3), ("s", 1e6), ("m", 60e6), ("h", 3600e6)];
        foreach (var (suffix, scale) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(text.AsSpan(0, text.Length - suffix.Length), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                return value * scale;
            }
        }

        throw new E2eException($"wrk: cannot read duration '{text}'");
    }

    private static long ParseLong(string text, string line) =>
        long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new E2eException($"wrk: cannot read '{text}' in '{line}'");

    private static double ParseDouble(string text, string line) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new E2eException($"wrk: cannot read '{text}' in '{line}'");
}

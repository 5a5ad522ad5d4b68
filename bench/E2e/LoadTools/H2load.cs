using System.Globalization;
using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.LoadTools;

/// <summary>
/// One h2load run over h2c (prior knowledge, <c>http://</c>): one thread (<c>-t1</c>), <paramref name="Clients"/>
/// connections (<c>-c</c>), <paramref name="Streams"/> concurrent streams per connection (<c>-m</c>), time-based
/// (<c>-D</c>) with <paramref name="WarmUp"/> seconds of h2load's own warm-up (<c>--warm-up-time</c>) first.
/// </summary>
internal sealed record H2loadRequest(IPEndPoint Target, TimeSpan Duration, int Clients, int Streams, TimeSpan WarmUp = default, string Path = "/") : ILoadRequest
{
    /// <summary>The h2load command line (without the executable), one argument per item.</summary>
    public IReadOnlyList<string> Arguments()
    {
        var inv = CultureInfo.InvariantCulture;
        List<string> arguments =
        [
            "-t1",
            "-c", Clients.ToString(inv),
            "-m", Streams.ToString(inv),
            "-D", Duration.TotalSeconds.ToString("0.###", inv),
        ];
        if (WarmUp > TimeSpan.Zero)
        {
            arguments.Add("--warm-up-time=" + WarmUp.TotalSeconds.ToString("0.###", inv));
        }

        arguments.Add($"http://{Target}{Path}");
        return arguments;
    }
}

/// <summary>
/// What h2load printed: the "requests:" counters, the status classes, req/s and the "time for request" line
/// (microseconds: min, max, mean, sd; h2load prints no percentiles).
/// </summary>
internal sealed record H2loadResult(
    double Seconds,
    double RequestsPerSecond,
    long Total,
    long Started,
    long Done,
    long Succeeded,
    long Failed,
    long Errored,
    long Timeout,
    long Status2xx,
    long Status3xx,
    long Status4xx,
    long Status5xx,
    double MinMicroseconds,
    double MaxMicroseconds,
    double MeanMicroseconds,
    double SdMicroseconds,
    string Protocol,
    string Raw)
{
    /// <summary>Null when the run is usable; otherwise why not (failures, errors, timeouts, 4xx/5xx, no requests, not h2c).</summary>
    public string? InvalidReason
    {
        get
        {
            var inv = CultureInfo.InvariantCulture;
            var reasons = new List<string>();
            if (Succeeded <= 0)
            {
                reasons.Add("no request succeeded");
            }

            if (Failed > 0 || Errored > 0 || Timeout > 0)
            {
                reasons.Add(string.Create(inv, $"{Failed} failed, {Errored} errored, {Timeout} timeout"));
            }

            if (Status4xx + Status5xx > 0)
            {
                reasons.Add(string.Create(inv, $"{Status4xx} 4xx, {Status5xx} 5xx"));
            }

            if (Succeeded > 0 && Protocol != "h2c")
            {
                reasons.Add($"application protocol '{Protocol}', not h2c");
            }

            return reasons.Count == 0 ? null : string.Join("; ", reasons);
        }
    }

    public bool IsValid => InvalidReason is null;
}

/// <summary>The h2load client (Debian package nghttp2-client). Output is parsed by <see cref="H2loadOutput.Parse"/>.</summary>
internal sealed class H2loadClient
{
    private readonly string _executable;

    public H2loadClient(string executable) => _executable = executable;

    public static ToolRequirement Requirement { get; } = new("h2load", "nghttp2-client");

    public string Name => "h2load";

    /// <summary>Runs h2load to completion; throws <see cref="E2eException"/> when it fails or prints no summary.</summary>
    public async Task<H2loadResult> RunAsync(H2loadRequest request, CancellationToken cancellationToken)
    {
        var limit = request.Duration + request.WarmUp + TimeSpan.FromSeconds(20);
        var result = await ProcessRunner.RunAsync(_executable, request.Arguments(), limit, cancellationToken);
        if (result.ExitCode != 0)
        {
            throw new E2eException($"h2load exited with code {result.ExitCode}:\n{result.RecentOutput}");
        }

        return H2loadOutput.Parse(result.StandardOutput);
    }
}

/// <summary>Parser of h2load's text summary (nghttp2 1.52).</summary>
internal static class H2loadOutput
{
    /// <summary>
    /// Reads the summary. Required: "finished in T, R req/s, ...", "requests: ...", "status codes: ..." and
    /// "time for request: min max mean sd +/-sd". "Application protocol: X" is optional (h2load omits it when no
    /// connection got that far).
    /// </summary>
    public static H2loadResult Parse(string output)
    {
        double? seconds = null, rate = null;
        Dictionary<string, long>? requests = null, status = null;
        double[]? time = null;
        var protocol = string.Empty;
        foreach (var rawLine in output.Split('\n'))
        {
            var line = rawLine.Trim();
            if (line.StartsWith("finished in ", StringComparison.Ordinal))
            {
                // "finished in 2.00s, 42277.50 req/s, 3.27MB/s"
                var parts = line["finished in ".Length..].Split(',', StringSplitOptions.TrimEntries);
                if (parts.Length < 2 || !parts[1].EndsWith(" req/s", StringComparison.Ordinal))
                {
                    throw new E2eException($"h2load: cannot read '{line}'");
                }

                seconds = ParseDuration(parts[0]) / 1e6;
                rate = ParseDouble(parts[1][..^" req/s".Length], line);
            }
            else if (line.StartsWith("requests:", StringComparison.Ordinal))
            {
                // "requests: 84555 total, 84715 started, 84555 done, 84555 succeeded, 0 failed, 0 errored, 0 timeout"
                requests = Counters(line["requests:".Length..], line);
            }
            else if (line.StartsWith("status codes:", StringComparison.Ordinal))
            {
                // "status codes: 84556 2xx, 0 3xx, 0 4xx, 0 5xx"
                status = Counters(line["status codes:".Length..], line);
            }
            else if (line.StartsWith("time for request:", StringComparison.Ordinal))
            {
                // "time for request:       94us     17.03ms      3.50ms      2.03ms    81.91%"
                var parts = line["time for request:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length < 4)
                {
                    throw new E2eException($"h2load: cannot read '{line}'");
                }

                time = [ParseDuration(parts[0]), ParseDuration(parts[1]), ParseDuration(parts[2]), ParseDuration(parts[3])];
            }
            else if (line.StartsWith("Application protocol:", StringComparison.Ordinal))
            {
                protocol = line["Application protocol:".Length..].Trim();
            }
        }

        if (seconds is null || rate is null || requests is null || status is null || time is null)
        {
            var head = output.Length > 600 ? output[^600..] : output;
            throw new E2eException($"h2load printed no summary (\"finished in\", \"requests:\", \"status codes:\", \"time for request:\"):\n{head}");
        }

        long Count(Dictionary<string, long> counters, string name, string what) =>
            counters.TryGetValue(name, out var value) ? value : throw new E2eException($"h2load: no '{name}' count in its {what} line");

        return new H2loadResult(
            seconds.Value,
            rate.Value,
            Count(requests, "total", "requests"),
            Count(requests, "started", "requests"),
            Count(requests, "done", "requests"),
            Count(requests, "succeeded", "requests"),
            Count(requests, "failed", "requests"),
            Count(requests, "errored", "requests"),
            Count(requests, "timeout", "requests"),
            Count(status, "2xx", "status codes"),
            Count(status, "3xx", "status codes"),
            Count(status, "4xx", "status codes"),
            Count(status, "5xx", "status codes"),
            time[0],
            time[1],
            time[2],
            time[3],
            protocol,
            output);
    }

    /// <summary>An h2load duration ("94us", "17.03ms", "2.00s") in microseconds.</summary>
    public static double ParseDuration(string text)
    {
        (string Suffix, double Scale)[] units = [("us", 1), ("ms", 1e3), ("s", 1e6)];
        foreach (var (suffix, scale) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(text.AsSpan(0, text.Length - suffix.Length), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                return value * scale;
            }
        }

        throw new E2eException($"h2load: cannot read duration '{text}'");
    }

    /// <summary>"84555 total, 84715 started, ..." as name -> count.</summary>
    private static Dictionary<string, long> Counters(string text, string line)
    {
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var item in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var pair = item.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (pair.Length != 2 || !long.TryParse(pair[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var count))
            {
                throw new E2eException($"h2load: cannot read '{item}' in '{line}'");
            }

            counters[pair[1]] = count;
        }

        return counters;
    }

    private static double ParseDouble(string text, string line) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new E2eException($"h2load: cannot read '{text}' in '{line}'");
}

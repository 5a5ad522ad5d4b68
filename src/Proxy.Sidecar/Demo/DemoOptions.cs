using System.Globalization;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Demo;

/// <summary>One destination of the demo's canary split: a subset of the <c>hello</c> service and its weight.</summary>
internal readonly record struct SplitWeight(string Subset, int Weight);

/// <summary>The flags of <c>sidecar demo</c>, validated (see <see cref="DemoOptionsParser"/>).</summary>
internal sealed record DemoOptions
{
    /// <summary>The two versions the demo starts; the only subsets a split may name.</summary>
    public static readonly IReadOnlyList<string> Versions = ["v1", "v2"];

    /// <summary>Requests the client starts per second in total; 0 means as fast as the connections allow.</summary>
    public int RequestsPerSecond { get; init; } = 50;

    /// <summary>Requests in flight at most (and keep-alive connections to the sidecar).</summary>
    public int Concurrency { get; init; } = 4;

    /// <summary>How long to run; null runs until interrupted (Ctrl+C).</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>The canary route's weighted split over the subsets.</summary>
    public IReadOnlyList<SplitWeight> Split { get; init; } = [new("v1", 90), new("v2", 10)];

    /// <summary>Share (0..1) of requests that carry <c>x-version: v2</c> and so take the header route.</summary>
    public double HeaderShare { get; init; } = 0.1;

    /// <summary>Print one JSON object per line (start, each interval, summary) instead of tables.</summary>
    public bool Json { get; init; }

    /// <summary>How often statistics are printed.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The configured weight share (0..1) of <paramref name="subset"/> in the split.</summary>
    public double ConfiguredShare(string subset)
    {
        long total = 0;
        long mine = 0;
        foreach (var s in Split)
        {
            total += s.Weight;
            if (s.Subset == subset)
            {
                mine += s.Weight;
            }
        }

        return total == 0 ? 0 : (double)mine / total;
    }
}

/// <summary>
/// Turns the demo's flag texts into <see cref="DemoOptions"/>, reporting every bad value at once, each naming its flag
/// (the caller exits 64 when there is any).
/// </summary>
internal static class DemoOptionsParser
{
    public const int MaxRequestsPerSecond = 100_000;
    public const int MaxConcurrency = 1024;

    public static DemoOptions? Parse(
        string? requestsPerSecond, string? concurrency, string? duration, string? split, string? headerShare, bool json, List<string> errors)
    {
        var before = errors.Count;
        var options = new DemoOptions { Json = json };
        if (requestsPerSecond is not null)
        {
            if (ValueParsers.ParseInt(requestsPerSecond, 0, MaxRequestsPerSecond, out var rps) is { } error)
            {
                errors.Add($"--requests-per-second: {error}");
            }

            options = options with { RequestsPerSecond = rps };
        }

        if (concurrency is not null)
        {
            if (ValueParsers.ParseInt(concurrency, 1, MaxConcurrency, out var c) is { } error)
            {
                errors.Add($"--concurrency: {error}");
            }

            options = options with { Concurrency = c };
        }

        if (duration is not null)
        {
            if (ParseDuration(duration) is { } d)
            {
                options = options with { Duration = d };
            }
            else
            {
                errors.Add($"--duration: \"{duration}\" is not a positive duration (e.g. 30s, 5m, 1h, or 00:01:30)");
            }
        }

        if (split is not null)
        {
            if (ParseSplit(split, errors) is { } weights)
            {
                options = options with { Split = weights };
            }
        }

        if (headerShare is not null)
        {
            if (double.TryParse(headerShare, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var share) && share is >= 0 and <= 1)
            {
                options = options with { HeaderShare = share };
            }
            else
            {
                errors.Add($"--header-share: \"{headerShare}\" is not a share from 0 to 1 (e.g. 0.1)");
            }
        }

        return errors.Count == before ? options : null;
    }

    /// <summary>The project's duration syntax (<c>30s</c>, <c>5m</c>) or a .NET time span (<c>00:00:30</c>); positive only.</summary>
    private static TimeSpan? ParseDuration(string text)
    {
        if (ValueParsers.ParseDuration(text, allowOff: false, out var value) is null && value > TimeSpan.Zero)
        {
            return value;
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value) && value > TimeSpan.Zero ? value : null;
    }

    /// <summary><c>v1:90,v2:10</c>: each subset once, a whole weight from 1 to <see cref="ConfigLoader.MaxWeight"/>.</summary>
    private static List<SplitWeight>? ParseSplit(string text, List<string> errors)
    {
        var before = errors.Count;
        var result = new List<SplitWeight>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var colon = part.IndexOf(':', StringComparison.Ordinal);
            var subset = colon < 0 ? part : part[..colon];
            if (colon < 0 || !Contains(DemoOptions.Versions, subset))
            {
                errors.Add($"--split: \"{part}\" is not subset:weight with a subset of {string.Join(" or ", DemoOptions.Versions)} (e.g. v1:90,v2:10)");
                continue;
            }

            if (ValueParsers.ParseInt(part[(colon + 1)..], 1, ConfigLoader.MaxWeight, out var weight) is { } error)
            {
                errors.Add($"--split: weight of {subset}: {error}");
                continue;
            }

            if (result.Exists(s => s.Subset == subset))
            {
                errors.Add($"--split: {subset} is given twice");
                continue;
            }

            result.Add(new SplitWeight(subset, weight));
        }

        return errors.Count == before ? result : null;
    }

    private static bool Contains(IReadOnlyList<string> list, string value)
    {
        foreach (var item in list)
        {
            if (item == value)
            {
                return true;
            }
        }

        return false;
    }
}

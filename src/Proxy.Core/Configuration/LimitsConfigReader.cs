using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes <c>circuitBreakers</c> (services) and <c>rateLimit</c> (routes, services):
/// <code>
/// "circuitBreakers": { "maxConnections": 1024, "maxPendingRequests": 1024, "maxRequests": 1024, "maxRetries": 3 }
/// "rateLimit": { "requests": 100, "per": "1s", "burst": 100, "by": "route" }
/// </code>
/// </summary>
public static class LimitsConfigReader
{
    /// <summary>Largest value of a circuit breaker limit.</summary>
    public const int MaxLimit = 1_000_000;

    /// <summary>Largest <c>requests</c> and <c>burst</c> of a rate limit.</summary>
    public const int MaxTokens = 1_000_000;

    public static CircuitBreakersConfig? ReadCircuitBreakers(JsonElement e, string key, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"maxConnections\": 1024, \"maxPendingRequests\": 1024, \"maxRequests\": 1024, \"maxRetries\": 3 }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "maxConnections", "maxPendingRequests", "maxRequests", "maxRetries"))
        {
            return null;
        }

        var before = errors.Count;
        var config = new CircuitBreakersConfig
        {
            MaxConnections = ReadCount(e, "maxConnections", key, errors, CircuitBreakersConfig.DefaultMaxConnections, min: 1),
            MaxPendingRequests = ReadCount(e, "maxPendingRequests", key, errors, CircuitBreakersConfig.DefaultMaxPendingRequests, min: 1),
            MaxRequests = ReadCount(e, "maxRequests", key, errors, CircuitBreakersConfig.DefaultMaxRequests, min: 1),
            MaxRetries = ReadCount(e, "maxRetries", key, errors, CircuitBreakersConfig.DefaultMaxRetries, min: 0),
        };
        return errors.Count == before ? config : null;
    }

    private static int ReadCount(JsonElement e, string name, string key, List<string> errors, int fallback, int min)
    {
        if (!e.TryGetProperty(name, out var value))
        {
            return fallback;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var n) || n < min || n > MaxLimit)
        {
            errors.Add($"{key}.{name}: must be a whole number from {min} to {MaxLimit}, not {value.GetRawText()}");
            return fallback;
        }

        return n;
    }

    public static RateLimitConfig? ReadRateLimit(JsonElement e, string key, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"requests\": 100, \"per\": \"1s\", \"burst\": 100, \"by\": \"route\" }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "requests", "per", "burst", "by"))
        {
            return null;
        }

        var before = errors.Count;
        var requests = 0;
        if (!e.TryGetProperty("requests", out var r))
        {
            errors.Add($"{key}.requests: missing (the requests allowed per period)");
        }
        else if (r.ValueKind != JsonValueKind.Number || !r.TryGetInt32(out requests) || requests < 1 || requests > MaxTokens)
        {
            errors.Add($"{key}.requests: must be a whole number from 1 to {MaxTokens}, not {r.GetRawText()}");
        }

        var per = TimeSpan.FromSeconds(1);
        if (e.TryGetProperty("per", out _) && ReadString(e, "per", key, errors) is { } perText)
        {
            if (ValueParsers.ParseDuration(perText, allowOff: false, out var value) is { } error)
            {
                errors.Add($"{key}.per: {error}");
            }
            else if (value < TimeSpan.FromMilliseconds(1) || value > TimeSpan.FromHours(24))
            {
                errors.Add($"{key}.per: must be from 1ms to 24h, not {perText}");
            }
            else
            {
                per = value;
            }
        }

        var burst = requests;
        if (e.TryGetProperty("burst", out var b))
        {
            if (b.ValueKind != JsonValueKind.Number || !b.TryGetInt32(out burst) || burst < 1 || burst > MaxTokens)
            {
                errors.Add($"{key}.burst: must be a whole number from 1 to {MaxTokens}, not {b.GetRawText()}");
            }
        }

        var by = RateLimitKey.Route;
        if (e.TryGetProperty("by", out _) && ReadString(e, "by", key, errors) is { } byText)
        {
            switch (byText)
            {
                case "route":
                    break;
                case "source":
                    by = RateLimitKey.Source;
                    break;
                default:
                    errors.Add($"{key}.by: \"{byText}\" is not a rate limit key (route, source)");
                    break;
            }
        }

        return errors.Count == before ? new RateLimitConfig { Requests = requests, Per = per, Burst = burst, By = by } : null;
    }

    public static void WriteCircuitBreakers(Utf8JsonWriter w, CircuitBreakersConfig config)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(config);
        w.WriteStartObject("circuitBreakers");
        w.WriteNumber("maxConnections", config.MaxConnections);
        w.WriteNumber("maxPendingRequests", config.MaxPendingRequests);
        w.WriteNumber("maxRequests", config.MaxRequests);
        w.WriteNumber("maxRetries", config.MaxRetries);
        w.WriteEndObject();
    }

    public static void WriteRateLimit(Utf8JsonWriter w, RateLimitConfig config)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(config);
        w.WriteStartObject("rateLimit");
        w.WriteNumber("requests", config.Requests);
        w.WriteString("per", ValueParsers.FormatDuration(config.Per));
        w.WriteNumber("burst", config.Burst);
        w.WriteString("by", config.By == RateLimitKey.Source ? "source" : "route");
        w.WriteEndObject();
    }
}

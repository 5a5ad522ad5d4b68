using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes <c>retries</c> (routes, services) and <c>retryBudget</c> (services):
/// <code>
/// "retries": { "maxRetries": 2, "on": ["connect-failure", "refused-stream", "reset", "gateway-error", "unavailable"],
///              "statusCodes": [409], "backoff": "25ms", "maxBackoff": "250ms", "nonIdempotent": false,
///              "maxBodyBytes": 65536 }
/// "retryBudget": { "ratio": 0.2, "minPerSecond": 10 }
/// </code>
/// </summary>
public static class RetryConfigReader
{
    public const int MaxRetriesLimit = 10;

    public static RetryPolicyConfig? ReadPolicy(JsonElement e, string key, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"maxRetries\": 2, \"on\": [...] }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "maxRetries", "on", "statusCodes", "backoff", "maxBackoff", "nonIdempotent", "maxBodyBytes"))
        {
            return null;
        }

        var before = errors.Count;
        var policy = new RetryPolicyConfig();
        if (e.TryGetProperty("maxRetries", out var max))
        {
            if (max.ValueKind != JsonValueKind.Number || !max.TryGetInt32(out var n) || n < 1 || n > MaxRetriesLimit)
            {
                errors.Add($"{key}.maxRetries: must be a whole number from 1 to {MaxRetriesLimit}, not {max.GetRawText()}");
            }
            else
            {
                policy = policy with { MaxRetries = n };
            }
        }

        if (e.TryGetProperty("on", out var on))
        {
            var value = RetryOn.None;
            ReadArray(on, $"{key}.on", errors, (item, itemKey) =>
            {
                if (ReadStringValue(item, itemKey, errors) is not { } name)
                {
                    return;
                }

                if (!RetryPolicyNames.TryParse(name, out var condition))
                {
                    errors.Add($"{itemKey}: \"{name}\" is not a retry condition ({string.Join(", ", RetryPolicyNames.All.Select(static p => p.Name))})");
                    return;
                }

                value |= condition;
            });
            if (value == RetryOn.None && errors.Count == before)
            {
                errors.Add($"{key}.on: must list at least one condition");
            }

            policy = policy with { On = value };
        }

        var codes = new List<int>();
        if (e.TryGetProperty("statusCodes", out var sc))
        {
            ReadArray(sc, $"{key}.statusCodes", errors, (item, itemKey) =>
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var code) || code < 100 || code > 599)
                {
                    errors.Add($"{itemKey}: must be an HTTP status code (100-599), not {item.GetRawText()}");
                    return;
                }

                codes.Add(code);
            });
            policy = policy with { StatusCodes = codes };
        }

        if ((policy.On & RetryOn.RetriableStatusCodes) != 0 && policy.StatusCodes.Count == 0 && errors.Count == before)
        {
            errors.Add($"{key}.statusCodes: missing (retriable-status-codes retries the codes listed here)");
        }
        else if (policy.StatusCodes.Count > 0 && (policy.On & RetryOn.RetriableStatusCodes) == 0 && errors.Count == before)
        {
            errors.Add($"{key}.statusCodes: only used with the condition retriable-status-codes in \"on\"");
        }

        policy = ReadDuration(e, "backoff", key, errors, policy, static (p, v) => p with { Backoff = v });
        policy = ReadDuration(e, "maxBackoff", key, errors, policy, static (p, v) => p with { MaxBackoff = v });
        if (policy.MaxBackoff < policy.Backoff && errors.Count == before)
        {
            errors.Add($"{key}.maxBackoff: {ValueParsers.FormatDuration(policy.MaxBackoff)} is shorter than backoff {ValueParsers.FormatDuration(policy.Backoff)}");
        }

        if (e.TryGetProperty("nonIdempotent", out var ni))
        {
            if (ni.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                errors.Add($"{key}.nonIdempotent: must be true or false");
            }
            else
            {
                policy = policy with { NonIdempotent = ni.GetBoolean() };
            }
        }

        if (e.TryGetProperty("maxBodyBytes", out var mb))
        {
            if (mb.ValueKind != JsonValueKind.Number || !mb.TryGetInt32(out var bytes) || bytes < 0 || bytes > RetryPolicyConfig.MaxBodyBytesLimit)
            {
                errors.Add($"{key}.maxBodyBytes: must be a whole number of bytes from 0 to {RetryPolicyConfig.MaxBodyBytesLimit}, not {mb.GetRawText()}");
            }
            else
            {
                policy = policy with { MaxBodyBytes = bytes };
            }
        }

        return errors.Count == before ? policy : null;
    }

    private static RetryPolicyConfig ReadDuration(JsonElement e, string name, string key, List<string> errors, RetryPolicyConfig policy, Func<RetryPolicyConfig, TimeSpan, RetryPolicyConfig> set)
    {
        if (!e.TryGetProperty(name, out _))
        {
            return policy;
        }

        if (ReadString(e, name, key, errors) is not { } text)
        {
            return policy;
        }

        if (ValueParsers.ParseDuration(text, allowOff: false, out var value) is { } error)
        {
            errors.Add($"{key}.{name}: {error}");
            return policy;
        }

        if (value <= TimeSpan.Zero || value > TimeSpan.FromMinutes(1))
        {
            errors.Add($"{key}.{name}: must be more than 0 and at most 1m");
            return policy;
        }

        return set(policy, value);
    }

    public static RetryBudgetConfig? ReadBudget(JsonElement e, string key, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"ratio\": 0.2, \"minPerSecond\": 10 }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "ratio", "minPerSecond"))
        {
            return null;
        }

        var budget = new RetryBudgetConfig();
        var ok = true;
        if (e.TryGetProperty("ratio", out var r))
        {
            if (r.ValueKind != JsonValueKind.Number || !r.TryGetDouble(out var ratio) || ratio < 0 || ratio > 1)
            {
                errors.Add($"{key}.ratio: must be a number from 0 to 1, not {r.GetRawText()}");
                ok = false;
            }
            else
            {
                budget = budget with { Ratio = ratio };
            }
        }

        if (e.TryGetProperty("minPerSecond", out var m))
        {
            if (m.ValueKind != JsonValueKind.Number || !m.TryGetInt32(out var min) || min < 0 || min > 100_000)
            {
                errors.Add($"{key}.minPerSecond: must be a whole number from 0 to 100000, not {m.GetRawText()}");
                ok = false;
            }
            else
            {
                budget = budget with { MinPerSecond = min };
            }
        }

        return ok ? budget : null;
    }

    public static void WritePolicy(Utf8JsonWriter w, RetryPolicyConfig policy)
    {
        w.WriteStartObject("retries");
        w.WriteNumber("maxRetries", policy.MaxRetries);
        w.WriteStartArray("on");
        foreach (var name in RetryPolicyNames.Names(policy.On))
        {
            w.WriteStringValue(name);
        }

        w.WriteEndArray();
        if (policy.StatusCodes.Count > 0)
        {
            w.WriteStartArray("statusCodes");
            foreach (var code in policy.StatusCodes)
            {
                w.WriteNumberValue(code);
            }

            w.WriteEndArray();
        }

        w.WriteString("backoff", ValueParsers.FormatDuration(policy.Backoff));
        w.WriteString("maxBackoff", ValueParsers.FormatDuration(policy.MaxBackoff));
        w.WriteBoolean("nonIdempotent", policy.NonIdempotent);
        w.WriteNumber("maxBodyBytes", policy.MaxBodyBytes);
        w.WriteEndObject();
    }

    public static void WriteBudget(Utf8JsonWriter w, RetryBudgetConfig budget)
    {
        w.WriteStartObject("retryBudget");
        w.WriteNumber("ratio", budget.Ratio);
        w.WriteNumber("minPerSecond", budget.MinPerSecond);
        w.WriteEndObject();
    }
}

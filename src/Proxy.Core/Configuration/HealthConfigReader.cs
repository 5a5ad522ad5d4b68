using System.Globalization;
using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes a service's <c>outlierDetection</c> and <c>healthCheck</c>:
/// <code>
/// "outlierDetection": { "consecutive5xx": 5, "consecutiveGatewayFailure": 0, "consecutiveLocalOriginFailure": 5,
///                       "interval": "10s", "baseEjectionTime": "30s", "maxEjectionTime": "300s", "maxEjectionPercent": 10,
///                       "successRateMinimumHosts": 5, "successRateRequestVolume": 100, "successRateStdevFactor": 1.9 }
/// "healthCheck": { "type": "http", "path": "/healthz", "host": "orders", "expectedStatuses": ["200-299"],
///                  "interval": "5s", "timeout": "1s", "healthyThreshold": 2, "unhealthyThreshold": 3 }
/// </code>
/// </summary>
public static class HealthConfigReader
{
    /// <summary>A service's <c>outlierDetection</c> and <c>healthCheck</c> (each null when absent); false when either is bad.</summary>
    public static bool ReadService(JsonElement service, string key, List<string> errors, out OutlierDetectionConfig? outlierDetection, out HealthCheckConfig? healthCheck)
    {
        var ok = true;
        outlierDetection = null;
        healthCheck = null;
        if (service.TryGetProperty("outlierDetection", out var od))
        {
            outlierDetection = ReadOutlierDetection(od, $"{key}.outlierDetection", errors);
            ok &= outlierDetection is not null;
        }

        if (service.TryGetProperty("healthCheck", out var hc))
        {
            healthCheck = ReadHealthCheck(hc, $"{key}.healthCheck", errors);
            ok &= healthCheck is not null;
        }

        return ok;
    }

    public static OutlierDetectionConfig? ReadOutlierDetection(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"consecutive5xx\": 5, \"baseEjectionTime\": \"30s\", ... }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "consecutive5xx", "consecutiveGatewayFailure", "consecutiveLocalOriginFailure", "interval", "baseEjectionTime",
                "maxEjectionTime", "maxEjectionPercent", "successRateMinimumHosts", "successRateRequestVolume", "successRateStdevFactor"))
        {
            return null;
        }

        var before = errors.Count;
        var c = new OutlierDetectionConfig();
        c = Int(e, "consecutive5xx", key, 0, 1000, errors, c, static (c, v) => c with { Consecutive5xx = v });
        c = Int(e, "consecutiveGatewayFailure", key, 0, 1000, errors, c, static (c, v) => c with { ConsecutiveGatewayFailure = v });
        c = Int(e, "consecutiveLocalOriginFailure", key, 0, 1000, errors, c, static (c, v) => c with { ConsecutiveLocalOriginFailure = v });
        c = Duration(e, "interval", key, errors, c, static (c, v) => c with { Interval = v });
        c = Duration(e, "baseEjectionTime", key, errors, c, static (c, v) => c with { BaseEjectionTime = v });
        c = Duration(e, "maxEjectionTime", key, errors, c, static (c, v) => c with { MaxEjectionTime = v });
        c = Int(e, "maxEjectionPercent", key, 0, 100, errors, c, static (c, v) => c with { MaxEjectionPercent = v });
        c = Int(e, "successRateMinimumHosts", key, 0, 10_000, errors, c, static (c, v) => c with { SuccessRateMinimumHosts = v });
        c = Int(e, "successRateRequestVolume", key, 1, 1_000_000, errors, c, static (c, v) => c with { SuccessRateRequestVolume = v });
        if (e.TryGetProperty("successRateStdevFactor", out var f))
        {
            if (f.ValueKind != JsonValueKind.Number || !f.TryGetDouble(out var factor) || factor <= 0 || factor > 100)
            {
                errors.Add($"{key}.successRateStdevFactor: must be a number above 0 and at most 100 (1.9 is Envoy's 1900), not {f.GetRawText()}");
            }
            else
            {
                c = c with { SuccessRateStdevFactor = factor };
            }
        }

        if (c.MaxEjectionTime < c.BaseEjectionTime && errors.Count == before)
        {
            errors.Add($"{key}.maxEjectionTime: {ValueParsers.FormatDuration(c.MaxEjectionTime)} is shorter than baseEjectionTime {ValueParsers.FormatDuration(c.BaseEjectionTime)}");
        }

        return errors.Count == before ? c : null;
    }

    public static HealthCheckConfig? ReadHealthCheck(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"type\": \"http\", \"path\": \"/healthz\", ... }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "type", "path", "host", "expectedStatuses", "interval", "timeout", "healthyThreshold", "unhealthyThreshold"))
        {
            return null;
        }

        var before = errors.Count;
        var c = new HealthCheckConfig();
        if (ReadString(e, "type", key, errors, required: false) is { } type)
        {
            switch (type)
            {
                case "http":
                    break;
                case "tcp":
                    c = c with { Type = HealthCheckType.Tcp };
                    break;
                default:
                    errors.Add($"{key}.type: must be \"http\" or \"tcp\", not \"{type}\"");
                    break;
            }
        }

        if (ReadString(e, "path", key, errors, required: false) is { } path)
        {
            if (path[0] != '/' || path.Any(static ch => ch <= ' ' || ch >= 0x7f))
            {
                errors.Add($"{key}.path: must start with / and hold no spaces or control characters, not \"{path}\"");
            }
            else
            {
                c = c with { Path = path };
            }
        }

        if (ReadString(e, "host", key, errors, required: false) is { } host)
        {
            if (host.Any(static ch => ch <= ' ' || ch >= 0x7f))
            {
                errors.Add($"{key}.host: must hold no spaces or control characters, not \"{host}\"");
            }
            else
            {
                c = c with { Host = host };
            }
        }

        if (e.TryGetProperty("expectedStatuses", out var statuses))
        {
            var ranges = new List<StatusRange>();
            ReadArray(statuses, $"{key}.expectedStatuses", errors, (item, itemKey) =>
            {
                if (ParseRange(item) is { } range)
                {
                    ranges.Add(range);
                }
                else
                {
                    errors.Add($"{itemKey}: must be a status (100-599) or a range \"200-299\", not {item.GetRawText()}");
                }
            });
            if (ranges.Count == 0 && errors.Count == before)
            {
                errors.Add($"{key}.expectedStatuses: must list at least one status");
            }

            c = c with { ExpectedStatuses = ranges };
        }

        c = Duration(e, "interval", key, errors, c, static (c, v) => c with { Interval = v });
        c = Duration(e, "timeout", key, errors, c, static (c, v) => c with { Timeout = v });
        c = Int(e, "healthyThreshold", key, 1, 100, errors, c, static (c, v) => c with { HealthyThreshold = v });
        c = Int(e, "unhealthyThreshold", key, 1, 100, errors, c, static (c, v) => c with { UnhealthyThreshold = v });
        if (c.Type == HealthCheckType.Tcp && errors.Count == before)
        {
            foreach (var httpOnly in (ReadOnlySpan<string>)["path", "host", "expectedStatuses"])
            {
                if (e.TryGetProperty(httpOnly, out _))
                {
                    errors.Add($"{key}.{httpOnly}: only used with \"type\": \"http\"");
                }
            }
        }

        return errors.Count == before ? c : null;
    }

    private static StatusRange? ParseRange(JsonElement item)
    {
        if (item.ValueKind == JsonValueKind.Number)
        {
            return item.TryGetInt32(out var code) && code is >= 100 and <= 599 ? new StatusRange(code, code) : null;
        }

        if (item.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        var text = item.GetString()!;
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        var from = dash < 0 ? text : text[..dash];
        var to = dash < 0 ? text : text[(dash + 1)..];
        if (!int.TryParse(from, NumberStyles.None, CultureInfo.InvariantCulture, out var lo) || !int.TryParse(to, NumberStyles.None, CultureInfo.InvariantCulture, out var hi)
            || lo < 100 || hi > 599 || lo > hi)
        {
            return null;
        }

        return new StatusRange(lo, hi);
    }

    private static T Int<T>(JsonElement e, string name, string key, int min, int max, List<string> errors, T config, Func<T, int, T> set)
    {
        if (!e.TryGetProperty(name, out var value))
        {
            return config;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var n) || n < min || n > max)
        {
            errors.Add($"{key}.{name}: must be a whole number from {min} to {max}, not {value.GetRawText()}");
            return config;
        }

        return set(config, n);
    }

    private static T Duration<T>(JsonElement e, string name, string key, List<string> errors, T config, Func<T, TimeSpan, T> set)
    {
        if (!e.TryGetProperty(name, out _) || ReadString(e, name, key, errors) is not { } text)
        {
            return config;
        }

        if (ValueParsers.ParseDuration(text, allowOff: false, out var value) is { } error)
        {
            errors.Add($"{key}.{name}: {error}");
            return config;
        }

        if (value < TimeSpan.FromMilliseconds(1) || value > TimeSpan.FromHours(1))
        {
            errors.Add($"{key}.{name}: must be at least 1ms and at most 1h, not {text}");
            return config;
        }

        return set(config, value);
    }

    public static void WriteOutlierDetection(Utf8JsonWriter w, OutlierDetectionConfig c)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(c);
        w.WriteStartObject("outlierDetection");
        w.WriteNumber("consecutive5xx", c.Consecutive5xx);
        w.WriteNumber("consecutiveGatewayFailure", c.ConsecutiveGatewayFailure);
        w.WriteNumber("consecutiveLocalOriginFailure", c.ConsecutiveLocalOriginFailure);
        w.WriteString("interval", ValueParsers.FormatDuration(c.Interval));
        w.WriteString("baseEjectionTime", ValueParsers.FormatDuration(c.BaseEjectionTime));
        w.WriteString("maxEjectionTime", ValueParsers.FormatDuration(c.MaxEjectionTime));
        w.WriteNumber("maxEjectionPercent", c.MaxEjectionPercent);
        w.WriteNumber("successRateMinimumHosts", c.SuccessRateMinimumHosts);
        w.WriteNumber("successRateRequestVolume", c.SuccessRateRequestVolume);
        w.WriteNumber("successRateStdevFactor", c.SuccessRateStdevFactor);
        w.WriteEndObject();
    }

    public static void WriteHealthCheck(Utf8JsonWriter w, HealthCheckConfig c)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(c);
        w.WriteStartObject("healthCheck");
        w.WriteString("type", c.Type == HealthCheckType.Tcp ? "tcp" : "http");
        if (c.Type == HealthCheckType.Http)
        {
            w.WriteString("path", c.Path);
            if (c.Host is not null)
            {
                w.WriteString("host", c.Host);
            }

            w.WriteStartArray("expectedStatuses");
            foreach (var range in c.ExpectedStatuses)
            {
                w.WriteStringValue(range.ToString());
            }

            w.WriteEndArray();
        }

        w.WriteString("interval", ValueParsers.FormatDuration(c.Interval));
        w.WriteString("timeout", ValueParsers.FormatDuration(c.Timeout));
        w.WriteNumber("healthyThreshold", c.HealthyThreshold);
        w.WriteNumber("unhealthyThreshold", c.UnhealthyThreshold);
        w.WriteEndObject();
    }
}

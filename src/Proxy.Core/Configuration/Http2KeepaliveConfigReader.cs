using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes a service's <c>http2Keepalive</c> and parses the two sidecar-wide defaults:
/// <code>
/// "http2Keepalive": { "interval": "30s", "timeout": "10s" }     // either may be left out (the default applies)
/// "http2Keepalive": { "interval": "off" }                       // no PINGs to this service's endpoints
/// </code>
/// </summary>
public static class Http2KeepaliveConfigReader
{
    public static Http2KeepaliveConfig? Read(JsonElement e, string key, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"interval\": \"30s\", \"timeout\": \"10s\" }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "interval", "timeout"))
        {
            return null;
        }

        var before = errors.Count;
        var config = new Http2KeepaliveConfig();
        if (e.TryGetProperty("interval", out _) && ReadString(e, "interval", key, errors) is { } intervalText)
        {
            if (ParseInterval(intervalText, out var interval) is { } error)
            {
                errors.Add($"{key}.interval: {error}");
            }
            else
            {
                config = config with { Interval = interval };
            }
        }

        if (e.TryGetProperty("timeout", out _) && ReadString(e, "timeout", key, errors) is { } timeoutText)
        {
            if (ParseTimeout(timeoutText, out var timeout) is { } error)
            {
                errors.Add($"{key}.timeout: {error}");
            }
            else
            {
                config = config with { Timeout = timeout };
            }
        }

        return errors.Count == before ? config : null;
    }

    /// <summary>A keepalive interval: a duration from 100ms to 24h, or off. Returns an error phrase or null.</summary>
    public static string? ParseInterval(string text, out TimeSpan value)
    {
        if (ValueParsers.ParseDuration(text, allowOff: true, out value) is { } error)
        {
            return error;
        }

        return value == Timeout.InfiniteTimeSpan || (value >= Http2KeepaliveConfig.Min && value <= Http2KeepaliveConfig.MaxInterval)
            ? null
            : $"{ValueParsers.FormatDuration(value)} is out of range (100ms to 24h, or off)";
    }

    /// <summary>A keepalive timeout: a duration from 100ms to 10m. Returns an error phrase or null.</summary>
    public static string? ParseTimeout(string text, out TimeSpan value)
    {
        if (ValueParsers.ParseDuration(text, allowOff: false, out value) is { } error)
        {
            return error;
        }

        return value >= Http2KeepaliveConfig.Min && value <= Http2KeepaliveConfig.MaxTimeout
            ? null
            : $"{ValueParsers.FormatDuration(value)} is out of range (100ms to 10m)";
    }

    public static void Write(Utf8JsonWriter w, Http2KeepaliveConfig config)
    {
        w.WriteStartObject("http2Keepalive");
        if (config.Interval is { } interval)
        {
            w.WriteString("interval", ValueParsers.FormatDuration(interval));
        }

        if (config.Timeout is { } timeout)
        {
            w.WriteString("timeout", ValueParsers.FormatDuration(timeout));
        }

        w.WriteEndObject();
    }
}

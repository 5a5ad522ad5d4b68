using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes a route's <c>timeouts</c>:
/// <code>
/// "timeouts": { "request": "10s", "perTry": "2s", "idle": "30s", "connect": "500ms" }
/// </code>
/// Each value is a duration, or <c>off</c> / <c>0s</c> for none; a key left out falls back to the listener-wide setting.
/// </summary>
public static class TimeoutsConfigReader
{
    public static RouteTimeoutsConfig? Read(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"request\": \"10s\", \"perTry\": \"2s\", \"idle\": \"30s\", \"connect\": \"1s\" }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "request", "perTry", "idle", "connect"))
        {
            return null;
        }

        var before = errors.Count;
        var config = new RouteTimeoutsConfig
        {
            Request = ReadTimeout(e, "request", key, errors, allowOff: true),
            PerTry = ReadTimeout(e, "perTry", key, errors, allowOff: true),
            Idle = ReadTimeout(e, "idle", key, errors, allowOff: true),
            Connect = ReadTimeout(e, "connect", key, errors, allowOff: false),
        };
        if (errors.Count == before && config.Request is { } request && request != Timeout.InfiniteTimeSpan
            && config.PerTry is { } perTry && perTry != Timeout.InfiniteTimeSpan && perTry > request)
        {
            // Gateway API's rule (backendRequest <= request): a try can never outlast the request it belongs to.
            errors.Add($"{key}.perTry: {ValueParsers.FormatDuration(perTry)} is longer than request {ValueParsers.FormatDuration(request)}");
        }

        return errors.Count == before ? config : null;
    }

    private static TimeSpan? ReadTimeout(JsonElement e, string name, string key, List<string> errors, bool allowOff)
    {
        if (!e.TryGetProperty(name, out _))
        {
            return null;
        }

        if (ReadString(e, name, key, errors) is not { } text)
        {
            return null;
        }

        if (allowOff && IsZero(text))
        {
            return Timeout.InfiniteTimeSpan;
        }

        if (ValueParsers.ParseDuration(text, allowOff, out var value) is { } error)
        {
            errors.Add($"{key}.{name}: {error}");
            return null;
        }

        return value;
    }

    /// <summary>"0", "0s", "0ms"...: Gateway API's way of saying "no timeout".</summary>
    private static bool IsZero(string text)
    {
        var digits = text.AsSpan().Trim().TrimEnd("mshMSH");
        return digits.Length > 0 && digits.TrimStart('0').IsEmpty;
    }

    public static void Write(Utf8JsonWriter w, RouteTimeoutsConfig timeouts)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(timeouts);
        w.WriteStartObject("timeouts");
        WriteTimeout(w, "request", timeouts.Request);
        WriteTimeout(w, "perTry", timeouts.PerTry);
        WriteTimeout(w, "idle", timeouts.Idle);
        WriteTimeout(w, "connect", timeouts.Connect);
        w.WriteEndObject();
    }

    private static void WriteTimeout(Utf8JsonWriter w, string name, TimeSpan? value)
    {
        if (value is { } v)
        {
            w.WriteString(name, ValueParsers.FormatDuration(v));
        }
    }
}

using System.Globalization;
using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes a route's <c>fault</c> (fault injection):
/// <code>
/// "fault": { "delay": { "duration": "2s", "percentage": 10 },
///            "abort": { "httpStatus": 503, "grpcStatus": "UNAVAILABLE", "percentage": 5 },
///            "headerControl": true }
/// </code>
/// </summary>
public static class FaultConfigReader
{
    public static FaultConfig? Read(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"delay\": {{...}}, \"abort\": {{...}}, \"headerControl\": false }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "delay", "abort", "headerControl"))
        {
            return null;
        }

        var before = errors.Count;
        var config = new FaultConfig();
        if (e.TryGetProperty("delay", out var delay))
        {
            config = config with { Delay = ReadDelay(delay, $"{key}.delay", errors) };
        }

        if (e.TryGetProperty("abort", out var abort))
        {
            config = config with { Abort = ReadAbort(abort, $"{key}.abort", errors) };
        }

        if (e.TryGetProperty("headerControl", out var hc))
        {
            if (hc.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                errors.Add($"{key}.headerControl: must be true or false");
            }
            else
            {
                config = config with { HeaderControl = hc.GetBoolean() };
            }
        }

        if (errors.Count == before && config.Delay is null && config.Abort is null && !config.HeaderControl)
        {
            errors.Add($"{key}: needs a delay, an abort or headerControl: true");
        }

        return errors.Count == before ? config : null;
    }

    private static FaultDelayConfig? ReadDelay(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "duration", "percentage"))
        {
            return null;
        }

        var before = errors.Count;
        var duration = TimeSpan.Zero;
        if (ReadString(e, "duration", key, errors) is { } text && ValueParsers.ParseDuration(text, allowOff: false, out duration) is { } error)
        {
            errors.Add($"{key}.duration: {error}");
        }

        var percentage = ReadPercentage(e, key, errors);
        return errors.Count == before ? new FaultDelayConfig(duration, percentage) : null;
    }

    private static FaultAbortConfig? ReadAbort(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "httpStatus", "grpcStatus", "percentage"))
        {
            return null;
        }

        var before = errors.Count;
        int? http = null;
        if (e.TryGetProperty("httpStatus", out var hs))
        {
            if (hs.ValueKind != JsonValueKind.Number || !hs.TryGetInt32(out var status) || status < 200 || status > 599)
            {
                errors.Add($"{key}.httpStatus: must be an HTTP status code from 200 to 599, not {hs.GetRawText()}");
            }
            else
            {
                http = status;
            }
        }

        int? grpc = null;
        if (e.TryGetProperty("grpcStatus", out var gs))
        {
            grpc = ParseGrpcStatus(gs);
            if (grpc is null)
            {
                errors.Add($"{key}.grpcStatus: must be a gRPC status from 1 to 16 or its name (e.g. UNAVAILABLE), not {gs.GetRawText()}");
            }
        }

        if (errors.Count == before && http is null && grpc is null)
        {
            errors.Add($"{key}: needs httpStatus or grpcStatus (or both)");
        }

        var percentage = ReadPercentage(e, key, errors);
        return errors.Count == before ? new FaultAbortConfig { HttpStatus = http, GrpcStatus = grpc, Percentage = percentage } : null;
    }

    private static int? ParseGrpcStatus(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            return e.TryGetInt32(out var n) && n is >= 1 and <= 16 ? n : null;
        }

        if (e.ValueKind == JsonValueKind.String)
        {
            var index = IndexOf(GrpcStatusNames.All, e.GetString()!);
            return index >= 1 ? index : null;
        }

        return null;
    }

    private static int IndexOf(IReadOnlyList<string> list, string value)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] == value)
            {
                return i;
            }
        }

        return -1;
    }

    private static double ReadPercentage(JsonElement e, string key, List<string> errors)
    {
        if (!e.TryGetProperty("percentage", out var p))
        {
            return 100;
        }

        if (p.ValueKind != JsonValueKind.Number || !p.TryGetDouble(out var value) || value < 0 || value > 100)
        {
            errors.Add($"{key}.percentage: must be a number from 0 to 100, not {p.GetRawText()}");
            return 0;
        }

        return value;
    }

    public static void Write(Utf8JsonWriter w, FaultConfig fault)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(fault);
        w.WriteStartObject("fault");
        if (fault.Delay is { } delay)
        {
            w.WriteStartObject("delay");
            w.WriteString("duration", ValueParsers.FormatDuration(delay.Duration));
            w.WriteNumber("percentage", delay.Percentage);
            w.WriteEndObject();
        }

        if (fault.Abort is { } abort)
        {
            w.WriteStartObject("abort");
            if (abort.HttpStatus is { } http)
            {
                w.WriteNumber("httpStatus", http);
            }

            if (abort.GrpcStatus is { } grpc)
            {
                w.WriteString("grpcStatus", GrpcStatusNames.Name(grpc));
            }

            w.WriteNumber("percentage", abort.Percentage);
            w.WriteEndObject();
        }

        w.WriteBoolean("headerControl", fault.HeaderControl);
        w.WriteEndObject();
    }

    /// <summary>"12.5" style text of a percentage, for sentences.</summary>
    public static string FormatPercentage(double percentage) => percentage.ToString("0.###", CultureInfo.InvariantCulture);
}

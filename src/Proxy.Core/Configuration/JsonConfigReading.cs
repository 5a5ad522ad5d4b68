using System.Text.Json;

namespace Proxy.Core.Configuration;

/// <summary>
/// Small helpers shared by the config readers (listeners and services here, routes in Proxy.Http): each
/// reports a problem as "key: what is wrong" into the caller's error list and never stops at the first.
/// </summary>
public static class JsonConfigReading
{
    /// <summary>Calls <paramref name="readItem"/> for each element with its key (<c>key[i]</c>); an error if not an array.</summary>
    public static void ReadArray(JsonElement array, string key, List<string> errors, Action<JsonElement, string> readItem)
    {
        ArgumentNullException.ThrowIfNull(errors);
        ArgumentNullException.ThrowIfNull(readItem);
        if (array.ValueKind != JsonValueKind.Array)
        {
            errors.Add($"{key}: must be an array");
            return;
        }

        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            readItem(item, $"{key}[{i++}]");
        }
    }

    /// <summary>The property <paramref name="name"/> of an object as a non-empty string, or null with an error.</summary>
    public static string? ReadString(JsonElement obj, string name, string key, List<string> errors, bool required = true)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (!obj.TryGetProperty(name, out var value))
        {
            if (required)
            {
                errors.Add($"{key}.{name}: missing");
            }

            return null;
        }

        return ReadStringValue(value, $"{key}.{name}", errors);
    }

    /// <summary>A JSON string value (non-empty unless <paramref name="allowEmpty"/>), or null with an error.</summary>
    public static string? ReadStringValue(JsonElement value, string key, List<string> errors, bool allowEmpty = false)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (value.ValueKind != JsonValueKind.String || (!allowEmpty && string.IsNullOrWhiteSpace(value.GetString())))
        {
            errors.Add($"{key}: must be a {(allowEmpty ? "" : "non-empty ")}string");
            return null;
        }

        return value.GetString();
    }

    /// <summary>False (with an error) when not an object; an error for every key not in <paramref name="known"/>.</summary>
    public static bool CheckKeys(JsonElement obj, string key, List<string> errors, params string[] known)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (obj.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object");
            return false;
        }

        foreach (var p in obj.EnumerateObject())
        {
            if (Array.IndexOf(known, p.Name) < 0)
            {
                errors.Add($"{key}.{p.Name}: unknown key (known: {string.Join(", ", known)})");
            }
        }

        return true;
    }
}

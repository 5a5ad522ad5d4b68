using System.Text.Json;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.App;

/// <summary>
/// What a reload changes, compared section by section in the config file's own schema (<see cref="ConfigJson"/>):
/// <list type="bullet">
/// <item>applied live: <c>services</c> (added, removed, changed), the <c>routes</c>, <c>service</c> and <c>sni</c> of
/// listeners that keep running, <c>authorization</c>;</item>
/// <item>needing a restart (reported, not applied): listeners added or removed, a listener's address, protocol, tls,
/// mesh, jwt or authorization flag, and every process setting (listen addresses, transport, tcp, detect, http, http2,
/// tls, mesh identity, logLevel, drainTimeout). A removed listener keeps serving with its last routes until then.</item>
/// </list>
/// </summary>
internal sealed record ConfigDiff(ProxyConfig Effective, IReadOnlyList<string> Applied, IReadOnlyList<string> RestartRequired)
{
    /// <summary>True when the file changes nothing that is in force.</summary>
    public bool IsEmpty => Applied.Count == 0;

    public static ConfigDiff Compute(ProxyConfig running, ProxyConfig next)
    {
        var applied = new List<string>();
        var restart = new List<string>();

        // --- services ---
        var before = running.Services.ToDictionary(static s => s.Name, StringComparer.Ordinal);
        var after = next.Services.ToDictionary(static s => s.Name, StringComparer.Ordinal);
        foreach (var service in next.Services)
        {
            if (!before.TryGetValue(service.Name, out var old))
            {
                applied.Add($"service {service.Name} added");
            }
            else if (Json(old) != Json(service))
            {
                applied.Add($"service {service.Name} changed ({string.Join(", ", ChangedKeys(Json(old), Json(service), "services"))})");
            }
        }

        foreach (var service in running.Services)
        {
            if (!after.ContainsKey(service.Name))
            {
                applied.Add($"service {service.Name} removed");
            }
        }

        // --- listeners: routing applies live, the binding needs a restart ---
        var nextListeners = next.Listeners.ToDictionary(static l => l.Name, StringComparer.Ordinal);
        var merged = new List<ListenerConfig>(running.Listeners.Count);
        foreach (var listener in running.Listeners)
        {
            if (!nextListeners.TryGetValue(listener.Name, out var wanted))
            {
                restart.Add($"listener {listener.Name} removed: it keeps serving with its last routes until a restart");
                merged.Add(listener);
                continue;
            }

            var binding = ChangedKeys(Json(Binding(listener)), Json(Binding(wanted)), "listeners");
            if (binding.Count > 0)
            {
                restart.Add($"listener {listener.Name}: {string.Join(", ", binding)} changed: needs a restart");
            }

            var routing = ChangedKeys(Json(listener), Json(listener with { Service = wanted.Service, Routes = wanted.Routes, Sni = wanted.Sni }), "listeners");
            if (routing.Count > 0)
            {
                applied.Add($"listener {listener.Name} {string.Join(", ", routing)} changed");
            }

            merged.Add(listener with { Service = wanted.Service, Routes = wanted.Routes, Sni = wanted.Sni });
        }

        foreach (var listener in next.Listeners)
        {
            if (!running.Listeners.Any(l => l.Name == listener.Name))
            {
                restart.Add($"listener {listener.Name} added ({listener.Address}): needs a restart");
            }
        }

        // --- authorization ---
        if (ToJson(new ProxyConfig { Authorization = running.Authorization }) != ToJson(new ProxyConfig { Authorization = next.Authorization }))
        {
            applied.Add($"authorization changed ({next.Authorization.Policies.Count} policies)");
        }

        // --- everything else is read once at start ---
        var process = ChangedKeys(
            ToJson(running with { Services = [], Listeners = [], Authorization = new AuthorizationConfig() }),
            ToJson(next with { Services = [], Listeners = [], Authorization = new AuthorizationConfig() }),
            null);
        foreach (var key in process)
        {
            restart.Add($"{key} changed: needs a restart");
        }

        var effective = running with { Services = next.Services, Listeners = merged, Authorization = next.Authorization };
        return new ConfigDiff(effective, applied, restart);
    }

    /// <summary>What of a listener needs its socket or its TLS/mesh stages rebuilt (everything but service, routes and sni).</summary>
    private static ListenerConfig Binding(ListenerConfig listener) => listener with { Service = "", Routes = [], Sni = [] };

    private static string Json(ServiceConfig service) => ToJson(new ProxyConfig { Services = [service] });

    private static string Json(ListenerConfig listener) => ToJson(new ProxyConfig { Listeners = [listener] });

    private static string ToJson(ProxyConfig config) => ConfigJson.ToJson(config, indented: false);

    /// <summary>
    /// The keys whose values differ between two renderings: top-level keys, or with <paramref name="array"/> the keys of
    /// the single element of that array (a service or listener rendered alone); dotted one level down for objects.
    /// </summary>
    internal static List<string> ChangedKeys(string beforeJson, string afterJson, string? array)
    {
        using var beforeDoc = JsonDocument.Parse(beforeJson);
        using var afterDoc = JsonDocument.Parse(afterJson);
        var a = beforeDoc.RootElement;
        var b = afterDoc.RootElement;
        if (array is not null)
        {
            a = a.GetProperty(array)[0];
            b = b.GetProperty(array)[0];
        }

        var changed = new List<string>();
        Compare(a, b, "", array is null ? 2 : 1, changed);
        return changed;
    }

    private static void Compare(JsonElement a, JsonElement b, string prefix, int depth, List<string> changed)
    {
        var keys = new List<string>();
        foreach (var p in a.EnumerateObject())
        {
            keys.Add(p.Name);
        }

        foreach (var p in b.EnumerateObject())
        {
            if (!keys.Contains(p.Name))
            {
                keys.Add(p.Name);
            }
        }

        foreach (var key in keys)
        {
            var hasA = a.TryGetProperty(key, out var va);
            var hasB = b.TryGetProperty(key, out var vb);
            if (hasA && hasB && va.GetRawText() == vb.GetRawText())
            {
                continue;
            }

            if (depth > 1 && hasA && hasB && va.ValueKind == JsonValueKind.Object && vb.ValueKind == JsonValueKind.Object)
            {
                Compare(va, vb, prefix + key + ".", depth - 1, changed);
            }
            else
            {
                changed.Add(prefix + key);
            }
        }
    }
}

using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// One SNI route of TLS passthrough (Envoy's <c>filter_chain_match.server_names</c> + tcp_proxy, Istio's TLS route with
/// <c>sniHosts</c>): connections whose ClientHello names one of <see cref="ServerNames"/> are forwarded, still encrypted,
/// to <see cref="Service"/>. Names are exact (<c>api.example.com</c>) or wildcards (<c>*.example.com</c>), stored
/// lower-case; matching is case-insensitive and the most specific name wins (exact, then the longest wildcard suffix).
/// Config key <c>sni</c> on an explicit tcp listener or on a service (for captured connections to its addresses).
/// </summary>
public sealed record SniRouteConfig(IReadOnlyList<string> ServerNames, string Service);

/// <summary>Reads and checks the <c>sni</c> array of a listener or service.</summary>
public static class SniRouteConfigReader
{
    private const int MaxNameLength = 253;

    /// <summary>The routes of an <c>sni</c> array; every problem is added to <paramref name="errors"/> naming its key.</summary>
    public static List<SniRouteConfig> Read(JsonElement array, string key, List<string> errors, ref bool ok)
    {
        ArgumentNullException.ThrowIfNull(errors);
        var routes = new List<SniRouteConfig>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        var good = true;
        ReadArray(array, key, errors, (item, itemKey) =>
        {
            if (!CheckKeys(item, itemKey, errors, "serverNames", "service"))
            {
                good = false;
                return;
            }

            var service = ReadString(item, "service", itemKey, errors);
            var names = new List<string>();
            if (!item.TryGetProperty("serverNames", out var list))
            {
                errors.Add($"{itemKey}.serverNames: missing");
                good = false;
                return;
            }

            var namesOk = true;
            ReadArray(list, $"{itemKey}.serverNames", errors, (nameElement, nameKey) =>
            {
                var text = ReadStringValue(nameElement, nameKey, errors);
                if (text is null)
                {
                    namesOk = false;
                    return;
                }

                if (!IsValidPattern(text))
                {
                    errors.Add($"{nameKey}: \"{text}\" is not a server name (a DNS name such as api.example.com, or *.example.com)");
                    namesOk = false;
                    return;
                }

                var lower = text.ToLowerInvariant();
                if (!seen.TryAdd(lower, nameKey))
                {
                    errors.Add($"{nameKey}: \"{text}\" is already routed by {seen[lower]}");
                    namesOk = false;
                    return;
                }

                names.Add(lower);
            });
            if (list.ValueKind == JsonValueKind.Array && names.Count == 0 && namesOk)
            {
                errors.Add($"{itemKey}.serverNames: must list at least one server name");
                namesOk = false;
            }

            if (service is null || !namesOk || list.ValueKind != JsonValueKind.Array)
            {
                good = false;
                return;
            }

            routes.Add(new SniRouteConfig(names, service));
        });
        ok &= good && array.ValueKind == JsonValueKind.Array;
        return routes;
    }

    /// <summary>
    /// A DNS name (dot-separated labels of 1..63 letters, digits, '-' not at a label's ends, '_'; 253 at most; no trailing
    /// dot), optionally preceded by <c>*.</c>. The same rule the ClientHello parser (Proxy.Tls) applies to the SNI it reads.
    /// </summary>
    public static bool IsValidPattern(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var name = pattern.StartsWith("*.", StringComparison.Ordinal) ? pattern.AsSpan(2) : pattern.AsSpan();
        if (name.IsEmpty || name.Length > MaxNameLength)
        {
            return false;
        }

        var labelStart = 0;
        for (var i = 0; i <= name.Length; i++)
        {
            if (i == name.Length || name[i] == '.')
            {
                var length = i - labelStart;
                if (length is 0 or > 63 || name[labelStart] == '-' || name[i - 1] == '-')
                {
                    return false;
                }

                labelStart = i + 1;
            }
            else if (!(char.IsAsciiLetterOrDigit(name[i]) || name[i] is '-' or '_'))
            {
                return false;
            }
        }

        return true;
    }
}

using System.Net;
using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads and writes a service's <c>dns</c> and the global <c>dns</c> settings' values:
/// <code>
/// "dns": { "name": "api.example.internal", "port": 8080, "type": "ip", "minRefresh": "5s", "maxRefresh": "5m" }
/// "dns": { "name": "_http._tcp.api.example.internal", "type": "srv" }
/// top level: "dns": { "servers": ["10.0.0.10:53", "10.0.0.11"], "timeout": "2s" }   (flags --dns-server, --dns-timeout)
/// </code>
/// </summary>
public static class DnsConfigReader
{
    /// <summary>The shortest minRefresh accepted: a lookup loop faster than this would hammer the DNS server.</summary>
    public static readonly TimeSpan MinRefreshFloor = TimeSpan.FromMilliseconds(100);

    public static ServiceDnsConfig? ReadService(JsonElement e, string key, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}: must be an object {{ \"name\": \"api.example\", \"port\": 8080 }} or {{ \"name\": \"_http._tcp.api.example\", \"type\": \"srv\" }}");
            return null;
        }

        if (!CheckKeys(e, key, errors, "name", "port", "type", "minRefresh", "maxRefresh"))
        {
            return null;
        }

        var before = errors.Count;
        var name = ReadString(e, "name", key, errors);
        if (name is not null && !IsDnsName(name))
        {
            errors.Add($"{key}.name: \"{name}\" is not a DNS name (letters, digits, '-', '_' in dot-separated labels of 1-63, at most 253 in all)");
        }

        var type = DnsRecordKind.Ip;
        if (e.TryGetProperty("type", out _) && ReadString(e, "type", key, errors) is { } typeText)
        {
            var index = IndexOf(ServiceDnsConfig.TypeNames, typeText);
            if (index < 0)
            {
                errors.Add($"{key}.type: \"{typeText}\" is not a record type ({string.Join(", ", ServiceDnsConfig.TypeNames)})");
            }
            else
            {
                type = (DnsRecordKind)index;
            }
        }

        var port = 0;
        if (e.TryGetProperty("port", out var portElement))
        {
            if (type == DnsRecordKind.Srv)
            {
                errors.Add($"{key}.port: not used with type srv (each SRV record carries its port)");
            }
            else if (portElement.ValueKind != JsonValueKind.Number || !portElement.TryGetInt32(out port) || port < 1 || port > 65535)
            {
                errors.Add($"{key}.port: must be a port number from 1 to 65535, not {portElement.GetRawText()}");
            }
        }
        else if (type != DnsRecordKind.Srv)
        {
            errors.Add($"{key}.port: missing (the endpoints' port; A and AAAA records carry none)");
        }

        var min = ReadDuration(e, "minRefresh", key, ServiceDnsConfig.DefaultMinRefresh, errors);
        var max = ReadDuration(e, "maxRefresh", key, ServiceDnsConfig.DefaultMaxRefresh, errors);
        if (min < MinRefreshFloor)
        {
            errors.Add($"{key}.minRefresh: must be at least {ValueParsers.FormatDuration(MinRefreshFloor)}, not {ValueParsers.FormatDuration(min)}");
        }
        else if (max < min)
        {
            errors.Add($"{key}.maxRefresh: {ValueParsers.FormatDuration(max)} is below minRefresh {ValueParsers.FormatDuration(min)}");
        }

        return errors.Count != before || name is null
            ? null
            : new ServiceDnsConfig(name.TrimEnd('.')) { Port = port, Type = type, MinRefresh = min, MaxRefresh = max };
    }

    public static void WriteService(Utf8JsonWriter w, ServiceDnsConfig dns)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(dns);
        w.WriteStartObject("dns");
        w.WriteString("name", dns.Name);
        if (dns.Type != DnsRecordKind.Srv)
        {
            w.WriteNumber("port", dns.Port);
        }

        w.WriteString("type", ServiceDnsConfig.TypeName(dns.Type));
        w.WriteString("minRefresh", ValueParsers.FormatDuration(dns.MinRefresh));
        w.WriteString("maxRefresh", ValueParsers.FormatDuration(dns.MaxRefresh));
        w.WriteEndObject();
    }

    /// <summary>
    /// <c>--dns-server</c> / <c>dns.servers</c>: <c>system</c> (the resolvers of /etc/resolv.conf), or comma-separated
    /// <c>ip</c> or <c>ip:port</c> (IPv6 <c>[ip]:port</c>); port 53 when omitted.
    /// </summary>
    public static string? ParseServers(string text, out IReadOnlyList<IPEndPoint> servers)
    {
        ArgumentNullException.ThrowIfNull(text);
        servers = [];
        if (text is "system" or "")
        {
            return null;
        }

        var list = new List<IPEndPoint>();
        foreach (var raw in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (IPAddress.TryParse(raw, out var address) && !raw.Contains(']', StringComparison.Ordinal))
            {
                list.Add(new IPEndPoint(address, DnsConfig.DefaultPort));
                continue;
            }

            if (ValueParsers.ParseEndPoint(raw, allowZeroPort: false, out var ep) is { } error)
            {
                return $"{error}; expected system, or comma-separated ip or ip:port";
            }

            list.Add(ep!);
        }

        servers = list;
        return null;
    }

    public static string FormatServers(IReadOnlyList<IPEndPoint> servers)
        => servers.Count == 0 ? "system" : string.Join(',', servers.Select(static s => s.ToString()));

    /// <summary>The file's <c>dns.servers</c> as an array: joined into the flag's form.</summary>
    public static string? JoinServers(JsonElement array, string key, List<string> errors)
    {
        var parts = new List<string>();
        var before = errors.Count;
        ReadArray(array, key, errors, (item, itemKey) =>
        {
            if (ReadStringValue(item, itemKey, errors) is { } s)
            {
                parts.Add(s);
            }
        });
        return errors.Count == before ? string.Join(',', parts) : null;
    }

    private static TimeSpan ReadDuration(JsonElement e, string name, string key, TimeSpan fallback, List<string> errors)
    {
        if (!e.TryGetProperty(name, out _) || ReadString(e, name, key, errors) is not { } text)
        {
            return fallback;
        }

        if (ValueParsers.ParseDuration(text, allowOff: false, out var value) is { } error)
        {
            errors.Add($"{key}.{name}: {error}");
            return fallback;
        }

        return value;
    }

    private static int IndexOf(IReadOnlyList<string> names, string text)
    {
        for (var i = 0; i < names.Count; i++)
        {
            if (names[i] == text)
            {
                return i;
            }
        }

        return -1;
    }

    private static bool IsDnsName(string name)
    {
        var trimmed = name.TrimEnd('.');
        if (trimmed.Length is 0 or > 253)
        {
            return false;
        }

        foreach (var label in trimmed.Split('.'))
        {
            if (label.Length is 0 or > 63)
            {
                return false;
            }

            foreach (var c in label)
            {
                if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                {
                    return false;
                }
            }
        }

        return true;
    }
}

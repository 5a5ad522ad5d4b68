using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Proxy.Sidecar.Iptables;

/// <summary>The flags of <c>sidecar iptables</c> as typed on the command line (null: not given).</summary>
public sealed record IptablesArguments
{
    public string? InboundPort { get; init; }
    public string? OutboundPort { get; init; }
    public string? ProxyUid { get; init; }
    public string? ProxyGid { get; init; }
    public string? ProxyMark { get; init; }
    public string? ProxyPorts { get; init; }
    public string? ExcludeInboundPorts { get; init; }
    public string? IncludeInboundPorts { get; init; }
    public string? ExcludeOutboundPorts { get; init; }
    public string? ExcludeOutboundCidrs { get; init; }
    public string? IncludeOutboundCidrs { get; init; }
    public string? Ipv6 { get; init; }
    public string? Mode { get; init; }
    public bool Remove { get; init; }
    public bool DryRun { get; init; }
}

/// <summary>
/// Turns <see cref="IptablesArguments"/> into <see cref="IptablesOptions"/>, reporting every bad flag at
/// once, each error naming the flag and the value.
/// </summary>
public static class IptablesOptionsParser
{
    public static IptablesOptions? Parse(IptablesArguments arguments, out IReadOnlyList<string> errors)
    {
        var list = new List<string>();
        var defaults = new IptablesOptions();
        var options = new IptablesOptions
        {
            InboundPort = Port(arguments.InboundPort, "--inbound-port", defaults.InboundPort, list),
            OutboundPort = Port(arguments.OutboundPort, "--outbound-port", defaults.OutboundPort, list),
            ProxyUid = OptionalId(arguments.ProxyUid, "--proxy-uid", defaults.ProxyUid, list),
            ProxyGid = OptionalId(arguments.ProxyGid, "--proxy-gid", defaults.ProxyGid, list),
            ProxyMark = Mark(arguments.ProxyMark, list),
            ProxyPorts = arguments.ProxyPorts is null ? defaults.ProxyPorts : PortList(arguments.ProxyPorts, "--proxy-ports", list),
            ExcludeInboundPorts = PortList(arguments.ExcludeInboundPorts, "--exclude-inbound-ports", list),
            IncludeInboundPorts = IsAll(arguments.IncludeInboundPorts) ? null : PortList(arguments.IncludeInboundPorts, "--include-inbound-ports", list),
            ExcludeOutboundPorts = PortList(arguments.ExcludeOutboundPorts, "--exclude-outbound-ports", list),
            ExcludeOutboundCidrs = CidrList(arguments.ExcludeOutboundCidrs, "--exclude-outbound-cidrs", list),
            IncludeOutboundCidrs = IsAll(arguments.IncludeOutboundCidrs) ? null : CidrList(arguments.IncludeOutboundCidrs, "--include-outbound-cidrs", list),
            Ipv6 = Bool(arguments.Ipv6, "--ipv6", defaults.Ipv6, list),
            Mode = ParseMode(arguments.Mode, list),
            Remove = arguments.Remove,
            DryRun = arguments.DryRun,
        };

        if (options.InboundPort == options.OutboundPort && options.InboundPort != 0)
        {
            list.Add($"--inbound-port and --outbound-port are both {options.InboundPort}: the inbound and outbound capture listeners need different ports.");
        }

        if (options.ProxyUid is null && options.ProxyGid is null && options.ProxyMark is null)
        {
            list.Add("--proxy-uid, --proxy-gid and --proxy-mark are all empty: the proxy's own connections would be captured again (a redirect loop). Give at least one.");
        }

        errors = list;
        return list.Count == 0 ? options : null;
    }

    /// <summary>Null (flag absent) and "*" mean "everything".</summary>
    private static bool IsAll(string? value) => value is null || value.Trim() == "*";

    private static int Port(string? value, string flag, int fallback, List<string> errors)
    {
        if (value is null)
        {
            return fallback;
        }

        if (TryPort(value.Trim(), out var port))
        {
            return port;
        }

        errors.Add($"{flag} '{value}' is not a TCP port (1-65535).");
        return fallback;
    }

    private static bool TryPort(string text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 1 and <= 65535;

    private static int? OptionalId(string? value, string flag, int? fallback, List<string> errors)
    {
        if (value is null)
        {
            return fallback;
        }

        var text = value.Trim();
        if (text.Length == 0)
        {
            return null;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            return id;
        }

        errors.Add($"{flag} '{value}' is not a numeric id (or empty to disable).");
        return fallback;
    }

    private static PacketMark? Mark(string? value, List<string> errors)
    {
        if (value is null || value.Trim().Length == 0)
        {
            return null;
        }

        var text = value.Trim();
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var valuePart = slash < 0 ? text : text[..slash];
        if (!TryUInt(valuePart, out var mark) || mark == 0)
        {
            errors.Add($"--proxy-mark '{value}' is not a non-zero mark (decimal or 0x hex, optionally /mask).");
            return null;
        }

        if (slash < 0)
        {
            return new PacketMark(mark, null);
        }

        if (!TryUInt(text[(slash + 1)..], out var mask) || mask == 0)
        {
            errors.Add($"--proxy-mark '{value}' has a bad mask (decimal or 0x hex, non-zero).");
            return null;
        }

        return new PacketMark(mark, mask);
    }

    private static bool TryUInt(string text, out uint value) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);

    private static List<int> PortList(string? value, string flag, List<string> errors)
    {
        var ports = new List<int>();
        if (value is null)
        {
            return ports;
        }

        foreach (var item in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (TryPort(item, out var port))
            {
                if (!ports.Contains(port))
                {
                    ports.Add(port);
                }
            }
            else
            {
                errors.Add($"{flag}: '{item}' is not a TCP port (1-65535).");
            }
        }

        return ports;
    }

    private static List<IPNetwork> CidrList(string? value, string flag, List<string> errors)
    {
        var networks = new List<IPNetwork>();
        if (value is null)
        {
            return networks;
        }

        foreach (var item in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (TryCidr(item, out var network))
            {
                if (!networks.Contains(network))
                {
                    networks.Add(network);
                }
            }
            else
            {
                errors.Add($"{flag}: '{item}' is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32).");
            }
        }

        return networks;
    }

    /// <summary>Accepts "address" (a host) or "address/prefix"; host bits are cleared (10.1.2.3/8 -> 10.0.0.0/8).</summary>
    internal static bool TryCidr(string text, out IPNetwork network)
    {
        network = default;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var addressText = slash < 0 ? text : text[..slash];
        // No zone ids (fe80::1%eth0) and no IPv4-mapped IPv6: iptables matches neither.
        if (addressText.Contains('%', StringComparison.Ordinal) || !IPAddress.TryParse(addressText, out var address) || address.IsIPv4MappedToIPv6)
        {
            return false;
        }

        var maxPrefix = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = maxPrefix;
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > maxPrefix))
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out var length);
        bytes = bytes[..length];
        for (var bit = prefix; bit < length * 8; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }

        network = new IPNetwork(new IPAddress(bytes), prefix);
        return true;
    }

    private static bool Bool(string? value, string flag, bool fallback, List<string> errors)
    {
        if (value is null)
        {
            return fallback;
        }

        switch (value.Trim().ToUpperInvariant())
        {
            case "TRUE":
                return true;
            case "FALSE":
                return false;
            default:
                errors.Add($"{flag} '{value}' must be true or false.");
                return fallback;
        }
    }

    private static IptablesMode ParseMode(string? value, List<string> errors)
    {
        switch (value?.Trim().ToUpperInvariant())
        {
            case null:
            case "AUTO":
                return IptablesMode.Auto;
            case "NFT":
                return IptablesMode.Nft;
            case "LEGACY":
                return IptablesMode.Legacy;
            default:
                errors.Add($"--mode '{value}' must be auto, nft or legacy.");
                return IptablesMode.Auto;
        }
    }
}

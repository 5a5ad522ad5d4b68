using System.Globalization;
using System.Net;

namespace Proxy.Core.Configuration;

/// <summary>Parses the textual forms used by flags and the config file. Each returns an error phrase or null.</summary>
public static class ValueParsers
{
    /// <summary>"[::]:15001", "0.0.0.0:15001", "127.0.0.1:0", ":15001" (all addresses, dual-stack).</summary>
    public static string? ParseListenAddress(string text, out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (text.StartsWith(':') && !text.StartsWith("::", StringComparison.Ordinal))
        {
            if (!TryParsePort(text.AsSpan(1), allowZero: true, out var p))
            {
                return $"\"{text}\" has no valid port (0-65535)";
            }

            endPoint = new IPEndPoint(IPAddress.IPv6Any, p);
            return null;
        }

        return ParseEndPoint(text, allowZeroPort: true, out endPoint);
    }

    /// <summary>"10.0.0.7:8080" or "[fd00::7]:8080": an IP address with an explicit port.</summary>
    public static string? ParseEndPoint(string text, bool allowZeroPort, out IPEndPoint? endPoint)
    {
        endPoint = null;
        var colon = text.LastIndexOf(':');
        var close = text.LastIndexOf(']');
        if (colon < 0 || colon < close || colon == text.Length - 1)
        {
            return $"\"{text}\" is not an address with a port (expected ip:port or [ipv6]:port)";
        }

        var host = text.AsSpan(0, colon);
        if (host.Length >= 2 && host[0] == '[' && host[^1] == ']')
        {
            host = host[1..^1];
        }
        else if (host.Contains(':'))
        {
            return $"\"{text}\" is ambiguous: write an IPv6 address in brackets, e.g. [::1]:8080";
        }

        if (!IPAddress.TryParse(host, out var address))
        {
            return $"\"{text}\" does not start with an IP address (host names are not supported here)";
        }

        if (!TryParsePort(text.AsSpan(colon + 1), allowZeroPort, out var port))
        {
            return $"\"{text}\" has no valid port ({(allowZeroPort ? "0" : "1")}-65535)";
        }

        endPoint = new IPEndPoint(address, port);
        return null;
    }

    private static bool TryParsePort(ReadOnlySpan<char> text, bool allowZero, out int port)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port)
           && port <= 65535 && (allowZero || port > 0);

    /// <summary>"250ms", "5s", "2m", "1h", "1.5s"; "off" when <paramref name="allowOff"/> (returns InfiniteTimeSpan).</summary>
    public static string? ParseDuration(string text, bool allowOff, out TimeSpan value)
    {
        value = default;
        if (allowOff && text is "off" or "infinite")
        {
            value = Timeout.InfiniteTimeSpan;
            return null;
        }

        var span = text.AsSpan().Trim();
        var unitStart = span.Length;
        while (unitStart > 0 && char.IsAsciiLetter(span[unitStart - 1]))
        {
            unitStart--;
        }

        var unit = span[unitStart..];
        double scaleMs = unit switch
        {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => 0,
        };
        if (scaleMs == 0 || !double.TryParse(span[..unitStart], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
        {
            return $"\"{text}\" is not a duration (e.g. 250ms, 5s, 2m, 1h{(allowOff ? ", or off" : "")})";
        }

        var ms = number * scaleMs;
        if (ms < 1 || ms > TimeSpan.FromDays(24).TotalMilliseconds)
        {
            return $"\"{text}\" is out of range (1ms to 24 days)";
        }

        value = TimeSpan.FromMilliseconds(ms);
        return null;
    }

    public static string? ParseInt(string text, int min, int max, out int value)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value))
        {
            return $"\"{text}\" is not a whole number";
        }

        return value < min || value > max ? $"{value} is out of range ({min}-{max})" : null;
    }

    public static string? ParseBool(string text, out bool value)
    {
        switch (text)
        {
            case "true":
                value = true;
                return null;
            case "false":
                value = false;
                return null;
            default:
                value = false;
                return $"\"{text}\" is not true or false";
        }
    }

    /// <summary>"25,587,3306" (spaces allowed around commas): distinct ports 1-65535, returned sorted; "" is none.</summary>
    public static string? ParsePorts(string text, out IReadOnlyList<int> ports)
    {
        ports = [];
        var list = new List<int>();
        if (text.AsSpan().Trim().IsEmpty)
        {
            return null;
        }

        foreach (var part in text.Split(','))
        {
            var item = part.Trim();
            if (!TryParsePort(item, allowZero: false, out var port))
            {
                return $"\"{item}\" is not a port (1-65535) in the list \"{text}\"";
            }

            if (list.Contains(port))
            {
                return $"port {port} is listed twice in \"{text}\"";
            }

            list.Add(port);
        }

        list.Sort();
        ports = list.ToArray();
        return null;
    }

    /// <summary>Formats ports the way <see cref="ParsePorts"/> reads them.</summary>
    public static string FormatPorts(IReadOnlyList<int> ports)
        => string.Join(',', ports.Select(static p => p.ToString(CultureInfo.InvariantCulture)));

    /// <summary>Formats a duration the way <see cref="ParseDuration"/> reads it.</summary>
    public static string FormatDuration(TimeSpan value)
    {
        if (value == Timeout.InfiniteTimeSpan)
        {
            return "off";
        }

        var ms = value.TotalMilliseconds;
        return ms % 3_600_000 == 0 ? $"{ms / 3_600_000}h"
            : ms % 60_000 == 0 ? $"{ms / 60_000}m"
            : ms % 1000 == 0 ? $"{ms / 1000}s"
            : FormattableString.Invariant($"{ms}ms");
    }

    /// <summary>Formats an endpoint the way <see cref="ParseEndPoint"/> reads it (IPv6 in brackets).</summary>
    public static string FormatEndPoint(IPEndPoint? endPoint) => endPoint is null ? "off" : endPoint.ToString();
}
